//! k3s release assets for an air-gapped install: the binary (and
//! optionally the air-gap images tarball) of one exact release and
//! architecture, fetched once, verified, and kept in the cache beside the
//! base images so that later runs, and an offline `build`, find them.
//!
//! ```text
//! ensure_k3s(cache, http, v1.31.4+k3s1, arm64, Binary, progress)
//!   ── cached_k3s? ──────────────────────────────→ K3sArtifact (no network)
//!   ── GET <base>/v1.31.4%2Bk3s1/sha256sum-arm64.txt   (≤ 64 KiB, must list the asset)
//!   ── GET <base>/v1.31.4%2Bk3s1/k3s-arm64 → downloads/<sha>.part (resumable)
//!   ── SHA-256 equal? → blobs/<sha>.k3s, then k3s/v1.31.4+k3s1_arm64_binary.json
//! ```
//!
//! `<base>` is `https://github.com/k3s-io/k3s/releases/download`, or the
//! `--mirror` URL (`HttpOptions::mirror`) in its place: a mirror serves
//! `<mirror>/<version>/<asset>`, the release's directory as upstream names
//! it (with `+` written `%2B`, which a static file server decodes back).
//!
//! The checksum file comes first and must list the asset: there is no
//! download without a checksum to hold it to. Every refusal is a
//! [`K3sFetchError`] naming the URL, release and architecture, and leaves
//! nothing cached: no blob and no record. The one thing that may stay is
//! the `.part` of a transfer that kept being cut short (as for images, the
//! next run resumes it); it is published only after its whole SHA-256
//! matched.
//!
//! [`cached_k3s`] is the offline lookup: it checks the blob's size and its
//! sampled fingerprint (as the cache does for images) and re-hashes the
//! whole blob only when its time stamp moved. The cache's layout for these
//! files is in `record`.

mod record;
mod sums;

use std::path::PathBuf;

use reqwest::StatusCode;
use thiserror::Error;

pub(crate) use record::prune;
pub use record::{K3sEntry, K3sRecord, entries, remove, verify};
pub use sums::{SumsError, expected_sha256};

use super::cache::{Cache, CacheError};
use super::fetch::{self, FetchError};
use super::fingerprint::{self, Fingerprint, Quick};
use super::http::{Http, HttpError, HttpOptions, Url, parse_url};
use super::redact;
use crate::digest::Sha256;
use crate::k3s::{K3sArch, K3sVersion};
use crate::progress::Progress;

/// Where upstream publishes releases; a mirror replaces exactly this.
pub const RELEASES: &str = "https://github.com/k3s-io/k3s/releases/download";

/// Which file of a release.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum K3sAsset {
    /// The k3s binary (`k3s`, `k3s-arm64`, `k3s-armhf`).
    Binary,
    /// The images k3s would otherwise pull, for an air-gapped first start
    /// (`k3s-airgap-images-<arch>.tar.zst`).
    AirgapImages,
}

impl K3sAsset {
    /// The asset's file name in a release.
    pub fn file_name(self, arch: K3sArch) -> String {
        match self {
            Self::Binary => arch.binary_asset().to_owned(),
            Self::AirgapImages => arch.airgap_asset(),
        }
    }

    /// How records and listings name it.
    pub fn key(self) -> &'static str {
        match self {
            Self::Binary => "binary",
            Self::AirgapImages => "airgap-images",
        }
    }

    fn from_key(s: &str) -> Option<Self> {
        [Self::Binary, Self::AirgapImages]
            .into_iter()
            .find(|a| a.key() == s)
    }

    fn blob_extension(self) -> &'static str {
        match self {
            Self::Binary => "k3s",
            Self::AirgapImages => "tar.zst",
        }
    }

    /// In messages: "binary", "air-gap images".
    fn what(self) -> &'static str {
        match self {
            Self::Binary => "binary",
            Self::AirgapImages => "air-gap images",
        }
    }
}

/// A verified asset in the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct K3sArtifact {
    pub path: PathBuf,
    pub sha256: Sha256,
    pub len: u64,
}

#[derive(Debug, Error)]
pub enum K3sFetchError {
    #[error("k3s {version} publishes no {what} for {arch} ({url}: HTTP 404)")]
    NotPublished {
        version: String,
        arch: K3sArch,
        what: &'static str,
        url: String,
    },
    #[error(
        "refusing an unverified k3s {version} {what} for {arch}: its checksum file {url} \
         is missing (HTTP 404)"
    )]
    NoChecksumFile {
        version: String,
        arch: K3sArch,
        what: &'static str,
        url: String,
    },
    #[error("refusing k3s {version} {file} for {arch}: the checksum file {url} {reason}")]
    Checksums {
        version: String,
        arch: K3sArch,
        file: String,
        url: String,
        reason: SumsError,
    },
    #[error(transparent)]
    Mismatch(Box<ChecksumMismatch>),
    /// A transfer that failed for good (the cause says how; a `.part` cut
    /// short stays for the next run to resume).
    #[error("downloading k3s {version} {file} for {arch}")]
    Download {
        version: String,
        arch: K3sArch,
        file: String,
        #[source]
        source: Box<FetchError>,
    },
    #[error("k3s {version} {file} for {arch}")]
    Http {
        version: String,
        arch: K3sArch,
        file: String,
        #[source]
        source: Box<HttpError>,
    },
    #[error(transparent)]
    Cache(#[from] CacheError),
    #[error(transparent)]
    Io(#[from] crate::io::path_error::PathIoError),
}

/// A download whose SHA-256 is not the checksum file's.
#[derive(Debug, Error)]
#[error(
    "refusing k3s {version} {file} for {arch} from {url}: checksum mismatch: expected \
     sha256 {expected} ({sums}), got {got} in {size} bytes{}",
    if *deleted { "; the download was deleted" } else { "" }
)]
pub struct ChecksumMismatch {
    pub version: String,
    pub arch: K3sArch,
    pub file: String,
    pub url: String,
    /// The checksum file's URL.
    pub sums: String,
    pub expected: Sha256,
    pub got: Sha256,
    pub size: u64,
    pub deleted: bool,
}

/// The URL of `file` in release `version`: upstream's, or the mirror's
/// (`<mirror>/<version>/<file>`).
pub fn release_url(http: &HttpOptions, version: &K3sVersion, file: &str) -> Result<Url, HttpError> {
    let base = match &http.mirror {
        Some(m) => {
            let mut m = m.clone();
            m.set_query(None);
            m.set_fragment(None);
            m.as_str().trim_end_matches('/').to_owned()
        }
        None => RELEASES.to_owned(),
    };
    parse_url(&format!("{base}/{}/{file}", version.url_segment()))
}

/// The cached `asset` of `version` for `arch`, if the cache holds it intact:
/// no network. A blob whose time stamp moved is re-hashed (and kept only if
/// it still matches); a damaged one is reported and not returned.
pub fn cached_k3s(
    cache: &Cache,
    version: &K3sVersion,
    arch: K3sArch,
    asset: K3sAsset,
) -> Option<K3sArtifact> {
    cached_with(cache, version, arch, asset, &Progress::quiet())
}

fn cached_with(
    cache: &Cache,
    version: &K3sVersion,
    arch: K3sArch,
    asset: K3sAsset,
    progress: &Progress,
) -> Option<K3sArtifact> {
    let entry = record::find(cache, version, arch, asset)?;
    let usable = |e: &K3sEntry| {
        let r = e.record.as_ref().ok()?;
        Some(K3sArtifact {
            path: e.blob.clone()?,
            sha256: r.sha256,
            len: r.size,
        })
    };
    let why = match &entry.health {
        Quick::Intact => return usable(&entry),
        Quick::Unsure(why) => {
            progress.note(format!(
                "re-checking the cached k3s {version} {} for {arch} ({why})",
                asset.what()
            ));
            match record::verify(&entry, progress) {
                super::Verdict::Good => return usable(&entry),
                super::Verdict::Bad(why) => why,
            }
        }
        Quick::Damaged(why) => why.clone(),
    };
    tracing::warn!(
        "the cached k3s {version} {} for {arch} is damaged ({why}); fetching it again",
        asset.what()
    );
    None
}

/// Makes sure `asset` of `version` for `arch` is in the cache, verified
/// against the release's `sha256sum-<arch>.txt`, and returns it. A cached
/// one is used without the network.
pub fn ensure_k3s(
    cache: &Cache,
    http: &HttpOptions,
    version: &K3sVersion,
    arch: K3sArch,
    asset: K3sAsset,
    progress: &Progress,
) -> Result<K3sArtifact, K3sFetchError> {
    if let Some(hit) = cached_with(cache, version, arch, asset, progress) {
        return Ok(hit);
    }
    let file = asset.file_name(arch);
    let ctx = Ctx {
        version,
        arch,
        asset,
        file: &file,
    };
    let client = Http::new(http.clone()).map_err(|e| ctx.http(e))?;
    let sums_url = release_url(http, version, &arch.checksum_asset()).map_err(|e| ctx.http(e))?;
    let url = release_url(http, version, &file).map_err(|e| ctx.http(e))?;
    let (_, body) = client
        .get_small(&sums_url, sums::LIMIT)
        .map_err(|e| ctx.sums_error(&sums_url, e))?;
    let expected =
        sums::expected_sha256(&body, &file).map_err(|reason| K3sFetchError::Checksums {
            version: version.to_string(),
            arch,
            file: file.clone(),
            url: redact::url(&sums_url),
            reason,
        })?;

    let _lock = cache.lock(&expected.to_string(), progress)?;
    // Another run may have finished it while we waited.
    if let Some(hit) = cached_with(cache, version, arch, asset, progress) {
        return Ok(hit);
    }
    let blob = record::blob_path(cache, &expected, asset);
    if !blob_matches(&blob, &expected, progress) {
        let part = cache.part_path(&expected);
        progress.note(format!("downloading {}", redact::url(&url)));
        let got = fetch::download(&client, &url, &part, &file, progress).map_err(|e| {
            // A request refused before any byte came (a 404) leaves the
            // empty file `download` opened: nothing to resume.
            if std::fs::metadata(&part).is_ok_and(|m| m.len() == 0) {
                let _ = std::fs::remove_file(&part);
            }
            ctx.download_error(&url, e)
        })?;
        if got.sha256 != expected {
            let deleted = std::fs::remove_file(&part).is_ok();
            return Err(K3sFetchError::Mismatch(Box::new(ChecksumMismatch {
                version: version.to_string(),
                arch,
                file,
                url: redact::url(&url),
                sums: redact::url(&sums_url),
                expected,
                got: got.sha256,
                size: got.size,
                deleted,
            })));
        }
        progress.note(format!("sha256 {expected} matches"));
        std::fs::rename(&part, &blob)
            .map_err(crate::io::path_error::at("renaming into place", &blob))?;
    }
    let size = std::fs::metadata(&blob)
        .map_err(crate::io::path_error::at("reading", &blob))?
        .len();
    let fingerprint =
        Fingerprint::take(&blob, size).map_err(crate::io::path_error::at("reading", &blob))?;
    let rec = K3sRecord {
        version: version.to_string(),
        arch: arch.to_string(),
        asset: asset.key().to_owned(),
        file_name: file,
        url: redact::url(&url),
        sha256: expected,
        size,
        created: super::cache::now(),
        fingerprint,
    };
    record::write(&record::record_path(cache, version, arch, asset), &rec)?;
    Ok(K3sArtifact {
        path: blob,
        sha256: expected,
        len: size,
    })
}

/// Whether a blob with this hash is already there and intact (left by a run
/// that stopped before writing its record, or shared with another record).
/// One that does not hash right is deleted.
fn blob_matches(blob: &std::path::Path, expected: &Sha256, progress: &Progress) -> bool {
    let Ok(m) = std::fs::metadata(blob) else {
        return false;
    };
    match fingerprint::full_hash(blob, m.len(), progress) {
        Ok(got) if got == *expected => true,
        _ => {
            let _ = std::fs::remove_file(blob);
            false
        }
    }
}

/// What every message of one `ensure_k3s` names.
struct Ctx<'a> {
    version: &'a K3sVersion,
    arch: K3sArch,
    asset: K3sAsset,
    file: &'a str,
}

impl Ctx<'_> {
    fn http(&self, source: HttpError) -> K3sFetchError {
        K3sFetchError::Http {
            version: self.version.to_string(),
            arch: self.arch,
            file: self.file.to_owned(),
            source: Box::new(source),
        }
    }

    /// A checksum file that did not come: a 404 means no such release or
    /// architecture (said so when the architecture is the reason), and in
    /// any case no download.
    fn sums_error(&self, url: &Url, e: HttpError) -> K3sFetchError {
        match e {
            HttpError::Status { status, .. } if status == StatusCode::NOT_FOUND => {
                if self.version.arches().contains(&self.arch) {
                    K3sFetchError::NoChecksumFile {
                        version: self.version.to_string(),
                        arch: self.arch,
                        what: self.asset.what(),
                        url: redact::url(url),
                    }
                } else {
                    self.not_published(url)
                }
            }
            HttpError::TooLarge { limit, .. } => K3sFetchError::Checksums {
                version: self.version.to_string(),
                arch: self.arch,
                file: self.file.to_owned(),
                url: redact::url(url),
                reason: SumsError::TooLarge(limit),
            },
            other => self.http(other),
        }
    }

    fn download_error(&self, url: &Url, e: FetchError) -> K3sFetchError {
        match e {
            FetchError::Http(HttpError::Status { status, .. })
                if status == StatusCode::NOT_FOUND =>
            {
                self.not_published(url)
            }
            source => K3sFetchError::Download {
                version: self.version.to_string(),
                arch: self.arch,
                file: self.file.to_owned(),
                source: Box::new(source),
            },
        }
    }

    fn not_published(&self, url: &Url) -> K3sFetchError {
        K3sFetchError::NotPublished {
            version: self.version.to_string(),
            arch: self.arch,
            what: self.asset.what(),
            url: redact::url(url),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mirror_replaces_the_releases_prefix() {
        let v = K3sVersion::parse("v1.31.4+k3s1").unwrap();
        let upstream = release_url(&HttpOptions::default(), &v, "k3s-arm64").unwrap();
        assert_eq!(
            upstream.as_str(),
            "https://github.com/k3s-io/k3s/releases/download/v1.31.4%2Bk3s1/k3s-arm64"
        );
        for mirror in ["http://mirror.lan/k3s", "http://mirror.lan/k3s/"] {
            let opts = HttpOptions {
                mirror: Some(Url::parse(mirror).unwrap()),
                ..HttpOptions::default()
            };
            assert_eq!(
                release_url(&opts, &v, "sha256sum-arm64.txt")
                    .unwrap()
                    .as_str(),
                "http://mirror.lan/k3s/v1.31.4%2Bk3s1/sha256sum-arm64.txt"
            );
        }
    }

    #[test]
    fn asset_names_and_keys() {
        assert_eq!(K3sAsset::Binary.file_name(K3sArch::Arm), "k3s-armhf");
        assert_eq!(
            K3sAsset::AirgapImages.file_name(K3sArch::Amd64),
            "k3s-airgap-images-amd64.tar.zst"
        );
        for a in [K3sAsset::Binary, K3sAsset::AirgapImages] {
            assert_eq!(K3sAsset::from_key(a.key()), Some(a));
        }
    }
}
