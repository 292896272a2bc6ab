//! Turns a source (catalog entry or URL) into one concrete, checksummed
//! download: reads the publisher's checksum file, checks its signature when
//! it is the signed object (Ubuntu's `SHA256SUMS.gpg`), and says which
//! signature is still to be checked over the image itself (Armbian's
//! `.asc`).

use super::SourceError;
use super::catalog::{self, CatalogEntry, Locator, Publisher};
use super::checksums;
use super::http::{Http, Url};
use super::redact;
use super::verify::{GoodSignature, Keyring};
use crate::digest::Sha256;
use crate::progress::Progress;

/// Checksum and signature files are small; anything bigger is not one.
const SMALL: u64 = 1 << 20;

/// A download, ready to fetch and check.
#[derive(Debug, Clone)]
pub struct Remote {
    pub url: Url,
    /// The last path segment, as the checksum file names it.
    pub file_name: String,
    pub sha256: Sha256,
    pub signature: SignatureState,
    pub catalog: Option<&'static str>,
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
            let sums_url = join(&dir, "SHA256SUMS")?;
            progress.note(format!(
                "{}: reading {}",
                entry.name,
                redact::url(&sums_url)
            ));
            let (_, sums) = http.get_small(&sums_url, SMALL)?;
            let signature = if trust.skip_signature {
                SignatureState::Skipped
            } else {
                let sig_url = join(&dir, "SHA256SUMS.gpg")?;
                let (_, sig) = http.get_small(&sig_url, SMALL)?;
                trust.verify_sums(Some(entry.publisher), &sig_url, &sig, &sums)?
            };
            let lines = parse_sums(&sums_url, &sums)?;
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
            })
        }
    }
}

/// A URL whose checksum the user gave.
pub fn url_with_sha(url: &Url, sha256: Sha256) -> Result<Remote, SourceError> {
    Ok(Remote {
        url: url.clone(),
        file_name: file_name(url)?,
        sha256,
        signature: SignatureState::NotApplicable,
        catalog: None,
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
}
