//! Turns a source (catalog entry or URL) into one concrete, checksummed
//! download: reads the publisher's checksum file, checks its signature when
//! it is the signed object (Ubuntu's `SHA256SUMS.gpg`), and says which
//! signature is still to be checked over the image itself (Armbian's
//! `.asc`). Ubuntu cloud images are first resolved to their newest build
//! serial from the series directory's index (`cloud_index`).

use super::SourceError;
use super::catalog::{self, CatalogEntry, Locator, Publisher};
use super::checksums;
use super::cloud_index;
use super::http::{Http, Url};
use super::redact;
use super::verify::{GoodSignature, Keyring};
use crate::digest::Sha256;
use crate::progress::Progress;

/// Checksum and signature files are small; anything bigger is not one.
const SMALL: u64 = 1 << 20;

/// A cloud-images series index lists a few hundred builds in some 30 KiB;
/// a page past this is not one (and is not read further).
pub const INDEX_LIMIT: u64 = 1 << 20;

/// A download, ready to fetch and check.
#[derive(Debug, Clone)]
pub struct Remote {
    pub url: Url,
    /// The last path segment, as the checksum file names it.
    pub file_name: String,
    pub sha256: Sha256,
    pub signature: SignatureState,
    pub catalog: Option<&'static str>,
    /// The build serial a cloud image was resolved to (`20250201.1`).
    pub serial: Option<String>,
}

/// Where the authenticity of a download stands before it is fetched.
#[derive(Debug, Clone)]
pub enum SignatureState {
    /// The checksum file was signed and the signature is good.
    Verified(GoodSignature),
    /// A detached signature over the image itself, checked after download.
    OverImage { url: Url, keyring: Keyring },
    /// The user gave the checksum: it is the trust anchor.
    NotApplicable,
    /// `--insecure-skip-signature`.
    Skipped,
}

/// Security-relevant switches and keys.
pub struct Trust<'a> {
    pub extra_keys: &'a Keyring,
    pub skip_signature: bool,
}

impl Trust<'_> {
    fn keyring(&self, publisher: Option<Publisher>) -> Keyring {
        let mut ring = match publisher {
            Some(p) => Keyring::pinned(p),
            None => Keyring::all_pinned(),
        };
        ring.extend(self.extra_keys);
        ring
    }

    /// Checks the detached signature `sig` (fetched from `sig_url`) over a
    /// checksum file with the keys for `publisher` (all pinned keys when
    /// `None`).
    fn verify_sums(
        &self,
        publisher: Option<Publisher>,
        sig_url: &Url,
        sig: &[u8],
        sums: &[u8],
    ) -> Result<SignatureState, SourceError> {
        let good = self
            .keyring(publisher)
            .verify(sig, || Ok(sums))
            .map_err(|source| SourceError::Signature {
                url: redact::url(sig_url),
                source,
            })?;
        Ok(SignatureState::Verified(good))
    }
}

/// The newest image of a catalog entry.
pub fn catalog(
    entry: &'static CatalogEntry,
    http: &Http,
    trust: &Trust<'_>,
    progress: &Progress,
) -> Result<Remote, SourceError> {
    match entry.locator {
        Locator::UbuntuRelease { dir, series } => {
            let dir = http.mirrored(dir)?;
            let (sums_url, lines, signature) = signed_sums(entry, &dir, http, trust, progress)?;
            let newest = lines
                .iter()
                .filter_map(|l| Some((catalog::ubuntu_point_release(series, &l.name)?, l)))
                .max_by_key(|(point, _)| *point)
                .map(|(_, l)| l)
                .ok_or_else(|| SourceError::NotListed {
                    url: redact::url(&sums_url),
                    what: format!(
                        "ubuntu-{series}[.N]-preinstalled-server-arm64+raspi.img.xz image"
                    ),
                })?;
            Ok(Remote {
                url: join(&dir, &newest.name)?,
                file_name: newest.name.clone(),
                sha256: newest.sha256,
                signature,
                catalog: Some(entry.name),
                serial: None,
            })
        }
        Locator::UbuntuCloud { dir, file } => {
            let index_url = http.mirrored(dir)?;
            progress.note(format!(
                "{}: reading {}",
                entry.name,
                redact::url(&index_url)
            ));
            // A server may redirect `…/noble` to `…/noble/`: the release
            // directories are relative to where the index came from.
            let (dir, index) = http.get_small(&index_url, INDEX_LIMIT)?;
            let serial =
                cloud_index::newest(&String::from_utf8_lossy(&index)).ok_or_else(|| {
                    SourceError::NotListed {
                        url: redact::url(&dir),
                        what: "release-YYYYMMDD[.N]/ directory".to_owned(),
                    }
                })?;
            let release = subdir(&dir, &serial.dir_name())?;
            progress.note(format!(
                "{}: newest serial {serial} ({})",
                entry.name,
                redact::url(&release)
            ));
            let (sums_url, lines, signature) = signed_sums(entry, &release, http, trust, progress)?;
            let line = checksums::find(&lines, file).ok_or_else(|| SourceError::NotListed {
                url: redact::url(&sums_url),
                what: format!("(single) checksum for {file}"),
            })?;
            Ok(Remote {
                url: join(&release, file)?,
                file_name: file.to_owned(),
                sha256: line.sha256,
                signature,
                catalog: Some(entry.name),
                serial: Some(serial.to_string()),
            })
        }
        Locator::ArmbianLatest { link } => {
            let sha_url = http.mirrored(&format!("{link}.sha"))?;
            progress.note(format!("{}: reading {}", entry.name, redact::url(&sha_url)));
            // The redirector answers with the newest build's own `.sha`;
            // the image sits beside it.
            let (final_url, body) = http.get_small(&sha_url, SMALL)?;
            let lines = parse_sums(&final_url, &body)?;
            let [line] = lines.as_slice() else {
                return Err(SourceError::NotListed {
                    url: redact::url(&final_url),
                    what: "single image checksum".to_owned(),
                });
            };
            let url = join(&final_url, &line.name)?;
            let signature = if trust.skip_signature {
                SignatureState::Skipped
            } else {
                SignatureState::OverImage {
                    url: join(&final_url, &format!("{}.asc", line.name))?,
                    keyring: trust.keyring(Some(entry.publisher)),
                }
            };
            Ok(Remote {
                url,
                file_name: line.name.clone(),
                sha256: line.sha256,
                signature,
                catalog: Some(entry.name),
                serial: None,
            })
        }
    }
}

/// The `SHA256SUMS` of an Ubuntu directory `dir` (ending in `/`), checked
/// against its detached `SHA256SUMS.gpg` with the entry's publisher's keys
/// (unless signatures are skipped): its URL, lines and signature state.
fn signed_sums(
    entry: &CatalogEntry,
    dir: &Url,
    http: &Http,
    trust: &Trust<'_>,
    progress: &Progress,
) -> Result<(Url, Vec<checksums::ChecksumLine>, SignatureState), SourceError> {
    let sums_url = join(dir, "SHA256SUMS")?;
    progress.note(format!(
        "{}: reading {}",
        entry.name,
        redact::url(&sums_url)
    ));
    let (_, sums) = http.get_small(&sums_url, SMALL)?;
    let signature = if trust.skip_signature {
        SignatureState::Skipped
    } else {
        let sig_url = join(dir, "SHA256SUMS.gpg")?;
        let (_, sig) = http.get_small(&sig_url, SMALL)?;
        trust.verify_sums(Some(entry.publisher), &sig_url, &sig, &sums)?
    };
    let lines = parse_sums(&sums_url, &sums)?;
    Ok((sums_url, lines, signature))
}

/// A URL whose checksum the user gave.
pub fn url_with_sha(url: &Url, sha256: Sha256) -> Result<Remote, SourceError> {
    Ok(Remote {
        url: url.clone(),
        file_name: file_name(url)?,
        sha256,
        signature: SignatureState::NotApplicable,
        catalog: None,
        serial: None,
    })
}

/// A URL checked against a checksum file, itself signed by a detached
/// signature at `signature` or, when that is not given, at `<sums>.gpg`
/// or `<sums>.asc`.
pub fn url_with_checksums(
    url: &Url,
    sums_url: &Url,
    signature: Option<&Url>,
    http: &Http,
    trust: &Trust<'_>,
    progress: &Progress,
) -> Result<Remote, SourceError> {
    let name = file_name(url)?;
    progress.note(format!("reading {}", redact::url(sums_url)));
    let (_, sums) = http.get_small(sums_url, SMALL)?;
    let state = if trust.skip_signature {
        SignatureState::Skipped
    } else {
        let (sig_url, sig) = match signature {
            Some(u) => (u.clone(), http.get_small(u, SMALL)?.1),
            None => find_signature(sums_url, http)?,
        };
        trust.verify_sums(None, &sig_url, &sig, &sums)?
    };
    let lines = parse_sums(sums_url, &sums)?;
    let line = checksums::find(&lines, &name).ok_or_else(|| SourceError::NotListed {
        url: redact::url(sums_url),
        what: format!("(single) checksum for {name}"),
    })?;
    Ok(Remote {
        url: url.clone(),
        file_name: name,
        sha256: line.sha256,
        signature: state,
        catalog: None,
        serial: None,
    })
}

fn find_signature(sums_url: &Url, http: &Http) -> Result<(Url, Vec<u8>), SourceError> {
    let mut tried = Vec::new();
    for ext in ["gpg", "asc"] {
        let u = sibling(sums_url, ext)?;
        match http.get_small(&u, SMALL) {
            Ok((_, body)) => return Ok((u, body)),
            Err(super::http::HttpError::Status { status, .. }) if status.as_u16() == 404 => {
                tried.push(redact::url(&u));
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(SourceError::NoSignatureFile {
        checksums: redact::url(sums_url),
        tried: tried.join(" and "),
    })
}

fn parse_sums(url: &Url, body: &[u8]) -> Result<Vec<checksums::ChecksumLine>, SourceError> {
    let text = String::from_utf8_lossy(body);
    checksums::parse(&text).map_err(|reason| SourceError::Checksums {
        url: redact::url(url),
        reason,
    })
}

/// The URL of file `name` in the directory of `base` (the segment after
/// the last `/` is replaced). `name` comes from a checksum file and is
/// taken as one literal path segment.
fn join(base: &Url, name: &str) -> Result<Url, SourceError> {
    let bad = || SourceError::BadFileName {
        name: name.to_owned(),
    };
    if name.is_empty() || name.contains('/') || name == ".." || name == "." {
        return Err(bad());
    }
    let mut url = base.clone();
    url.set_query(None);
    url.set_fragment(None);
    url.path_segments_mut()
        .map_err(|()| bad())?
        .pop()
        .push(name);
    Ok(url)
}

/// The directory `name` inside the directory of `base`, with its
/// trailing `/` (so that `join` puts files in it).
fn subdir(base: &Url, name: &str) -> Result<Url, SourceError> {
    let mut url = join(base, name)?;
    url.path_segments_mut()
        .map_err(|()| SourceError::BadFileName {
            name: name.to_owned(),
        })?
        .push("");
    Ok(url)
}

/// `<url>.<ext>`.
fn sibling(url: &Url, ext: &str) -> Result<Url, SourceError> {
    let name = file_name(url)?;
    join(url, &format!("{name}.{ext}"))
}

/// The last path segment of `url`, percent-decoded.
pub fn file_name(url: &Url) -> Result<String, SourceError> {
    let seg = url
        .path_segments()
        .and_then(|mut s| s.next_back())
        .filter(|s| !s.is_empty())
        .ok_or_else(|| SourceError::BadFileName {
            name: redact::url(url),
        })?;
    Ok(percent_decode(seg))
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && let Some(v) = b
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_and_siblings() {
        let u = Url::parse("http://h/dir/ubuntu-24.04-preinstalled-server-arm64%2Braspi.img.xz")
            .unwrap();
        assert_eq!(
            file_name(&u).unwrap(),
            "ubuntu-24.04-preinstalled-server-arm64+raspi.img.xz"
        );
        let sums = Url::parse("http://h/dir/SHA256SUMS").unwrap();
        assert_eq!(
            sibling(&sums, "gpg").unwrap().as_str(),
            "http://h/dir/SHA256SUMS.gpg"
        );
        assert!(file_name(&Url::parse("http://h/dir/").unwrap()).is_err());
        assert!(join(&sums, "../x").is_err());
    }

    #[test]
    fn release_directories_nest_under_the_series() {
        let series = Url::parse("http://h/releases/noble/").unwrap();
        let rel = subdir(&series, "release-20250201.1").unwrap();
        assert_eq!(rel.as_str(), "http://h/releases/noble/release-20250201.1/");
        assert_eq!(
            join(&rel, "SHA256SUMS").unwrap().as_str(),
            "http://h/releases/noble/release-20250201.1/SHA256SUMS"
        );
    }
}
