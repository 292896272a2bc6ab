//! Base images: the built-in catalog, verified and resumable downloads, the
//! cache, and parallel decompression into sparse raw images. The one entry
//! point is [`ensure_base`]: given where an image comes from, it returns
//! the cached raw image, fetching, verifying and decompressing only what is
//! missing.
//!
//! ```text
//! SourceSpec ─locate→ Remote (URL, expected SHA-256, signature state)
//!            ─fetch→ downloads/<sha>.part ─verify→ blobs/<sha>.<ext>
//!            ─decompress→ images/<raw sha>.img (sparse) + .json
//! ```

pub mod cache;
pub mod catalog;
pub mod checksums;
pub mod cloud_index;
pub mod decompress;
pub mod fetch;
pub mod fingerprint;
pub mod http;
pub mod k3s;
pub mod locate;
pub mod qcow2;
pub mod redact;
pub mod sparse;
pub mod verify;
pub mod xz_index;

use std::fs::File;
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::io::path_error::at;

pub use crate::digest::Sha256;
pub use crate::progress::{Progress, ProgressStyle};
pub use cache::{Cache, CacheError, CachedImage, Entry, ImageMeta, Verdict};
pub use catalog::{CATALOG, CatalogEntry};
pub use decompress::Format;
pub use http::{HttpError, HttpOptions, Url};
pub use verify::{Keyring, SignatureError};

use crate::profile::resolved::{BaseImage, ImageSource};
use decompress::{DecodeOptions, DecompressError};
use fetch::FetchError;
use locate::{Remote, SignatureState, Trust};
use sparse::SparseWriter;

/// Where a base image comes from: what `pull` accepts and what a profile's
/// `image:` section resolves to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceSpec {
    /// A catalog entry by name (`homelab-image images`).
    Catalog(&'static CatalogEntry),
    /// A download checked against a checksum the user gave.
    UrlSha256 { url: Url, sha256: Sha256 },
    /// A download checked against a signed checksum file.
    UrlChecksums {
        url: Url,
        checksums: Url,
        signature: Option<Url>,
    },
    /// A local image file, compressed or raw, optionally with its checksum.
    Path {
        path: PathBuf,
        sha256: Option<Sha256>,
    },
}

impl SourceSpec {
    /// The source a resolved node's `image:` names (the profile was
    /// checked and parsed when it was resolved).
    pub fn for_node(image: &BaseImage) -> SourceSpec {
        match &image.source {
            ImageSource::Catalog { entry, .. } => Self::Catalog(entry),
            ImageSource::Url { url, sha256 } => Self::UrlSha256 {
                url: url.clone(),
                sha256: *sha256,
            },
            ImageSource::Path(p) => Self::Path {
                path: p.clone(),
                sha256: None,
            },
        }
    }

    /// How the source is named in messages and the cache metadata (a
    /// URL's password masked).
    pub fn describe(&self) -> String {
        match self {
            Self::Catalog(e) => e.name.to_owned(),
            Self::UrlSha256 { url, .. } | Self::UrlChecksums { url, .. } => redact::url(url),
            Self::Path { path, .. } => path.display().to_string(),
        }
    }
}

/// Everything besides the source that decides how an image is obtained.
pub struct SourceOptions {
    pub cache_dir: PathBuf,
    pub http: HttpOptions,
    /// Keys trusted in addition to the pinned ones (`--trusted-key`).
    pub trusted_keys: Keyring,
    /// `--insecure-skip-signature`.
    pub skip_signature: bool,
    /// Decoder threads for multi-block xz files.
    pub threads: u32,
}

impl SourceOptions {
    /// Defaults for a cache directory: pinned keys only, signatures on,
    /// one decoder thread per CPU.
    pub fn new(cache_dir: PathBuf) -> Self {
        Self {
            cache_dir,
            http: HttpOptions::default(),
            trusted_keys: Keyring::default(),
            skip_signature: false,
            threads: default_threads(),
        }
    }
}

pub fn default_threads() -> u32 {
    std::thread::available_parallelism().map_or(1, |n| u32::try_from(n.get()).unwrap_or(u32::MAX))
}

#[derive(Debug, Error)]
pub enum SourceError {
    #[error(transparent)]
    Http(#[from] HttpError),
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error(transparent)]
    Cache(#[from] CacheError),
    #[error("{url}: {reason}")]
    Checksums {
        url: String,
        reason: checksums::ChecksumsError,
    },
    #[error("{url} lists no {what}")]
    NotListed { url: String, what: String },
    #[error("{name:?} is not a usable file name")]
    BadFileName { name: String },
    #[error(
        "{what}: checksum mismatch: expected sha256 {expected}, got {got}{}",
        if *deleted { " (the download was deleted)" } else { "" }
    )]
    Mismatch {
        what: String,
        expected: Sha256,
        got: Sha256,
        deleted: bool,
    },
    #[error(
        "{}the signature {url}",
        if *deleted { "deleted the download: " } else { "" }
    )]
    ImageSignature {
        url: String,
        #[source]
        source: SignatureError,
        deleted: bool,
    },
    #[error("signature {url}")]
    Signature {
        url: String,
        #[source]
        source: SignatureError,
    },
    #[error(
        "no signature for {checksums} (tried {tried}): give --signature URL, or \
         --insecure-skip-signature to trust it unsigned"
    )]
    NoSignatureFile { checksums: String, tried: String },
    #[error("{}", path.display())]
    Decompress {
        path: PathBuf,
        #[source]
        source: DecompressError,
    },
    #[error(transparent)]
    Io(#[from] crate::io::path_error::PathIoError),
}

/// Makes sure the raw image of `spec` is in the cache and returns it.
///
/// Catalog entries are resolved online each time (to learn the newest
/// release); when that fails and an earlier release of the same entry is
/// cached, that one is used with a warning.
pub fn ensure_base(
    spec: &SourceSpec,
    opts: &SourceOptions,
    progress: &Progress,
) -> Result<CachedImage, SourceError> {
    let cache = Cache::open(&opts.cache_dir)?;
    let trust = Trust {
        extra_keys: &opts.trusted_keys,
        skip_signature: opts.skip_signature,
    };
    if let SourceSpec::Path { path, sha256 } = spec {
        return ensure_local(&cache, path, *sha256, opts, progress);
    }
    let http = http::Http::new(opts.http.clone())?;
    let remote = match spec {
        SourceSpec::Catalog(entry) => match locate::catalog(entry, &http, &trust, progress) {
            Ok(r) => r,
            Err(e) if matches!(&e, SourceError::Http(h) if h.is_transient() || h.is_unreachable()) =>
            {
                let Some(cached) = cache.newest_from_catalog(entry.name, progress) else {
                    return Err(e);
                };
                tracing::warn!(
                    "cannot look up the newest {} ({e}); using the cached {}",
                    entry.name,
                    cached.meta.release_name()
                );
                return Ok(cached);
            }
            Err(e) => return Err(e),
        },
        SourceSpec::UrlSha256 { url, sha256 } => locate::url_with_sha(url, *sha256)?,
        SourceSpec::UrlChecksums {
            url,
            checksums,
            signature,
        } => {
            locate::url_with_checksums(url, checksums, signature.as_ref(), &http, &trust, progress)?
        }
        // Returned early above: local files need no HTTP client.
        SourceSpec::Path { .. } => unreachable!("handled above"),
    };
    ensure_remote(&cache, &http, &remote, &spec.describe(), opts, progress)
}

/// The raw image of `spec` if the cache at `cache_dir` already holds it:
/// no network, nothing written (not even the cache's directories). A
/// catalog entry is its newest cached release.
pub fn cached_base(spec: &SourceSpec, cache_dir: &Path) -> Option<CachedImage> {
    if !cache_dir.join("index").is_dir() {
        return None;
    }
    let cache = Cache::open(cache_dir).ok()?;
    // A look, not a build: a re-hash of a changed entry runs without bars.
    let quiet = Progress::quiet();
    match spec {
        SourceSpec::Catalog(entry) => cache.newest_from_catalog(entry.name, &quiet),
        SourceSpec::UrlSha256 { sha256, .. } => cache.lookup(&sha256.to_string(), &quiet),
        SourceSpec::Path { path, .. } => cache.lookup(&local_key(path).ok()?, &quiet),
        SourceSpec::UrlChecksums { .. } => None,
    }
}

fn ensure_remote(
    cache: &Cache,
    http: &http::Http,
    remote: &Remote,
    source: &str,
    opts: &SourceOptions,
    progress: &Progress,
) -> Result<CachedImage, SourceError> {
    let key = remote.sha256.to_string();
    if let Some(hit) = cache.peek(&key) {
        return Ok(hit);
    }
    let _lock = cache.lock(&key, progress)?;
    // Another run may have finished it while we waited.
    if let Some(hit) = cache.lookup(&key, progress) {
        return Ok(hit);
    }
    let (blob, image_signer) = match cache.find_blob(&remote.sha256) {
        Some((path, _)) => (path, None),
        None => download_verified(cache, http, remote, progress)?,
    };
    let signature = match &remote.signature {
        SignatureState::Verified(good) => Some(good.to_string()),
        SignatureState::OverImage { .. } => {
            Some(image_signer.unwrap_or_else(|| "verified when it was downloaded".to_owned()))
        }
        SignatureState::NotApplicable => None,
        SignatureState::Skipped => Some("skipped (--insecure-skip-signature)".to_owned()),
    };
    let meta = MetaSeed {
        compressed_sha256: Some(remote.sha256),
        source: source.to_owned(),
        catalog: remote.catalog.map(str::to_owned),
        file_name: remote.file_name.clone(),
        url: Some(redact::url(&remote.url)),
        signature,
        serial: remote.serial.clone(),
    };
    decompress_into_cache(cache, &blob, &key, meta, None, opts, progress)
}

/// Downloads, checks the hash (and the image signature, if there is one)
/// and moves the file into `blobs/`; returns it and who signed the image.
/// A file that fails is deleted.
fn download_verified(
    cache: &Cache,
    http: &http::Http,
    remote: &Remote,
    progress: &Progress,
) -> Result<(PathBuf, Option<String>), SourceError> {
    let part = cache.part_path(&remote.sha256);
    progress.note(format!("downloading {}", redact::url(&remote.url)));
    let got = fetch::download(http, &remote.url, &part, &remote.file_name, progress)?;
    if got.sha256 != remote.sha256 {
        let deleted = std::fs::remove_file(&part).is_ok();
        return Err(SourceError::Mismatch {
            what: redact::url(&remote.url),
            expected: remote.sha256,
            got: got.sha256,
            deleted,
        });
    }
    progress.note(format!("sha256 {} matches", remote.sha256));
    let mut signer = None;
    match &remote.signature {
        SignatureState::OverImage { url, keyring } => {
            let (_, sig) = http.get_small(url, 1 << 20)?;
            progress.note(format!("checking the signature {}", redact::url(url)));
            match keyring.verify(&sig, || File::open(&part)) {
                Ok(good) => {
                    progress.note(format!("good signature by {good}"));
                    signer = Some(good.to_string());
                }
                Err(source) => {
                    let deleted = std::fs::remove_file(&part).is_ok();
                    return Err(SourceError::ImageSignature {
                        url: redact::url(url),
                        source,
                        deleted,
                    });
                }
            }
        }
        SignatureState::Verified(good) => {
            progress.note(format!("checksums signed by {good}"));
        }
        SignatureState::Skipped => {
            tracing::warn!(
                "not checking the signature of {} (--insecure-skip-signature)",
                redact::url(&remote.url)
            );
        }
        SignatureState::NotApplicable => {}
    }
    let mut head = [0u8; 6];
    let n = {
        use std::io::Read;
        File::open(&part)
            .and_then(|mut f| f.read(&mut head))
            .map_err(at("reading", &part))?
    };
    let format = Format::detect(&head[..n]);
    let blob = cache.publish_blob(&part, &remote.sha256, format)?;
    Ok((blob, signer))
}

/// What the cache metadata records about the source (the rest comes from
/// decompression).
struct MetaSeed {
    compressed_sha256: Option<Sha256>,
    source: String,
    catalog: Option<String>,
    file_name: String,
    url: Option<String>,
    signature: Option<String>,
    serial: Option<String>,
}

fn ensure_local(
    cache: &Cache,
    path: &Path,
    sha256: Option<Sha256>,
    opts: &SourceOptions,
    progress: &Progress,
) -> Result<CachedImage, SourceError> {
    let key = local_key(path)?;
    let matches = |hit: &CachedImage| sha256.is_none_or(|s| s == hit.meta.compressed_sha256);
    if let Some(hit) = cache.peek(&key).filter(matches) {
        return Ok(hit);
    }
    let _lock = cache.lock(&key, progress)?;
    if let Some(hit) = cache.lookup(&key, progress).filter(matches) {
        return Ok(hit);
    }
    let meta = MetaSeed {
        compressed_sha256: None,
        source: path.display().to_string(),
        catalog: None,
        file_name: path
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
        url: None,
        signature: None,
        serial: None,
    };
    decompress_into_cache(cache, path, &key, meta, sha256, opts, progress)
}

/// A cache key for a local file: its path and identity (device, inode,
/// size, modification time), so an unchanged file is not decoded twice and
/// a changed one is.
fn local_key(path: &Path) -> Result<String, SourceError> {
    use std::os::unix::fs::MetadataExt;
    let abs = std::fs::canonicalize(path).map_err(at("reading", path))?;
    let m = std::fs::metadata(&abs).map_err(at("reading", path))?;
    let id = format!(
        "{}\0{}\0{}\0{}\0{}.{}",
        abs.display(),
        m.dev(),
        m.ino(),
        m.len(),
        m.mtime(),
        m.mtime_nsec()
    );
    Ok(format!("path-{}", Sha256::of(id.as_bytes())))
}

/// Decompresses `input` into a temporary file in the cache and publishes
/// it under index `key` (and its compressed hash).
fn decompress_into_cache(
    cache: &Cache,
    input: &Path,
    key: &str,
    seed: MetaSeed,
    expect_input: Option<Sha256>,
    opts: &SourceOptions,
    progress: &Progress,
) -> Result<CachedImage, SourceError> {
    let io = |action| at(action, input);
    let dec_err = |source| SourceError::Decompress {
        path: input.to_owned(),
        source,
    };
    let mut file = File::open(input).map_err(io("opening"))?;
    let dopts = DecodeOptions {
        threads: opts.threads,
        hash_input: seed.compressed_sha256.is_none(),
    };
    let plan = decompress::plan(&mut file, &dopts).map_err(dec_err)?;
    progress.note(match (plan.format, plan.xz_blocks) {
        (Format::Raw, _) => format!("copying {} (raw image)", input.display()),
        (Format::Xz, Some(b)) => format!(
            "decompressing {} (xz, {b} block{}, {} thread{})",
            input.display(),
            if b == 1 { "" } else { "s" },
            plan.threads,
            if plan.threads == 1 { "" } else { "s" }
        ),
        (f, _) => format!("decompressing {} ({f})", input.display()),
    });
    let (tmp_file, tmp) = cache.image_tmp(key)?;
    let task = progress.task("decompressing", 0, plan.output_size);
    let mut writer = SparseWriter::new(tmp_file);
    let result = decompress::decompress(file, &plan, &dopts, &mut writer, |pos| {
        task.set_position(pos)
    })
    .map_err(dec_err)
    .and_then(|decoded| {
        let (_, summary) = writer.finish().map_err(at("writing", &tmp))?;
        Ok((decoded, summary))
    });
    let (decoded, summary) = match result {
        Ok(r) => r,
        Err(e) => {
            task.abandon();
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
    };
    let compressed = match (seed.compressed_sha256, decoded.input_sha256) {
        (Some(s), _) | (None, Some(s)) => s,
        // `hash_input` is set exactly when the seed has no hash, and then
        // `decompress` returns the input's hash.
        (None, None) => unreachable!("hash_input is set when no hash is known"),
    };
    if let Some(expected) = expect_input
        && expected != compressed
    {
        task.abandon();
        let _ = std::fs::remove_file(&tmp);
        return Err(SourceError::Mismatch {
            what: input.display().to_string(),
            expected,
            got: compressed,
            deleted: false,
        });
    }
    task.finish(format!(
        "decompressed {} → {} ({} of data, sha256 {})",
        decoded.format,
        crate::io::units::human_size(summary.size),
        crate::io::units::human_size(summary.data_bytes),
        summary.sha256.short()
    ));
    let meta = ImageMeta {
        sha256: summary.sha256,
        size: summary.size,
        data_bytes: summary.data_bytes,
        compressed_sha256: compressed,
        format: decoded.format,
        source: seed.source,
        catalog: seed.catalog,
        file_name: seed.file_name,
        url: seed.url,
        signature: seed.signature,
        serial: seed.serial,
        created: cache::now(),
        fingerprint: None,
    };
    let mut keys = vec![key.to_owned()];
    if key != compressed.to_string() {
        keys.push(compressed.to_string());
    }
    Ok(cache.publish_image(&tmp, meta, &keys)?)
}

/// A buffer length as a file offset or count: `usize` is at most 64 bits
/// on every target this builds for, so the conversion never saturates.
pub(crate) fn len64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}
