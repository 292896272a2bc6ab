//! OpenPGP detached signatures, checked with rPGP (`pgp`, pure Rust)
//! against keys pinned in the binary (`keys/`, see its README) plus any
//! the user adds with `--trusted-key`. A signature counts only when it is a
//! binary or text data signature with a SHA-2 family hash, made by a trusted
//! primary key or by a signing subkey that key has bound, and the key has
//! no valid revocation.

use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use pgp::composed::{Deserializable, DetachedSignature, SignedPublicKey};
use pgp::crypto::hash::HashAlgorithm;
use pgp::packet::{Signature, SignatureType};
use pgp::types::KeyDetails;
use thiserror::Error;

use super::catalog::Publisher;

const UBUNTU_CDIMAGE_2012: &str = include_str!("keys/ubuntu-cdimage-2012.asc");
const ARMBIAN_DF00FAF1: &str = include_str!("keys/armbian-df00faf1.asc");
const UBUNTU_CLOUDIMAGE_UEC: &str = include_str!("keys/ubuntu-cloudimage-uec.asc");

#[derive(Debug, Error)]
pub enum SignatureError {
    #[error("no OpenPGP signature in it")]
    NoSignature,
    #[error("unreadable OpenPGP signature: {0}")]
    Unparsable(String),
    #[error(
        "signed by {issuers}, which is not a trusted key for this image \
         (add a key with --trusted-key FILE)"
    )]
    UntrustedKey { issuers: String },
    #[error(
        "BAD signature by {key}: the signed file was altered or the signature is forged ({detail})"
    )]
    Bad { key: String, detail: String },
    #[error("signature by {key} uses {hash}, which is too weak to trust")]
    WeakHash { key: String, hash: String },
    #[error("signing key {key} is revoked")]
    Revoked { key: String },
    #[error("reading the signed data")]
    Read(#[source] std::io::Error),
}

#[derive(Debug, Error)]
pub enum KeyFileError {
    #[error("reading {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: no OpenPGP public key in it ({detail})", path.display())]
    Parse { path: PathBuf, detail: String },
}

/// A public key we trust, and where it came from (for messages).
#[derive(Debug, Clone)]
struct TrustedKey {
    key: SignedPublicKey,
}

/// The keys a signature may be made by.
#[derive(Debug, Clone, Default)]
pub struct Keyring {
    keys: Vec<TrustedKey>,
}

/// Who made a good signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoodSignature {
    /// The primary key's fingerprint, upper-case hex in groups of four.
    pub fingerprint: String,
    pub user_id: Option<String>,
}

impl fmt::Display for GoodSignature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.user_id {
            Some(uid) => write!(f, "{uid} ({})", self.fingerprint),
            None => f.write_str(&self.fingerprint),
        }
    }
}

impl Keyring {
    /// The keys pinned for `publisher`.
    pub fn pinned(publisher: Publisher) -> Self {
        let armored = match publisher {
            Publisher::Ubuntu => UBUNTU_CDIMAGE_2012,
            Publisher::Armbian => ARMBIAN_DF00FAF1,
            Publisher::UbuntuCloud => UBUNTU_CLOUDIMAGE_UEC,
        };
        let mut ring = Self::default();
        // The pinned keys are compiled in and parsed by a unit test, so a
        // failure here is a build mistake, not a runtime condition.
        let added = ring.add_armored(armored.as_bytes());
        debug_assert!(matches!(added, Ok(1)), "pinned key for {publisher:?}");
        ring
    }

    /// Every pinned key (for sources not tied to a publisher).
    pub fn all_pinned() -> Self {
        let mut ring = Self::pinned(Publisher::Ubuntu);
        ring.keys.extend(Self::pinned(Publisher::Armbian).keys);
        ring.keys.extend(Self::pinned(Publisher::UbuntuCloud).keys);
        ring
    }

    /// Adds the public keys in `path` (armored or binary, one or more).
    pub fn add_file(&mut self, path: &Path) -> Result<usize, KeyFileError> {
        let bytes = std::fs::read(path).map_err(|source| KeyFileError::Read {
            path: path.to_owned(),
            source,
        })?;
        self.add_armored(&bytes)
            .map_err(|detail| KeyFileError::Parse {
                path: path.to_owned(),
                detail,
            })
    }

    fn add_armored(&mut self, bytes: &[u8]) -> Result<usize, String> {
        let (keys, _) = SignedPublicKey::from_reader_many(bytes).map_err(|e| e.to_string())?;
        let mut n = 0;
        for key in keys {
            let key = key.map_err(|e| e.to_string())?;
            self.keys.push(TrustedKey { key });
            n += 1;
        }
        if n == 0 {
            return Err("the file holds no key".to_owned());
        }
        Ok(n)
    }

    pub fn extend(&mut self, other: &Keyring) {
        self.keys.extend(other.keys.iter().cloned());
    }

    pub fn fingerprints(&self) -> Vec<String> {
        self.keys
            .iter()
            .map(|k| spaced(&format!("{:X}", k.key.fingerprint())))
            .collect()
    }

    /// Checks the detached signature(s) in `signature` over the data that
    /// `open` yields (called once per candidate signature). Succeeds if any
    /// one signature is good.
    pub fn verify<R: Read>(
        &self,
        signature: &[u8],
        mut open: impl FnMut() -> std::io::Result<R>,
    ) -> Result<GoodSignature, SignatureError> {
        let (sigs, _) = DetachedSignature::from_reader_many(signature)
            .map_err(|e| SignatureError::Unparsable(e.to_string()))?;
        // Report, in this order: a failure by a trusted key, unknown
        // issuers, an unparsable packet, no signature at all.
        let mut failed: Option<SignatureError> = None;
        let mut untrusted = Vec::new();
        let mut unparsable: Option<String> = None;
        for sig in sigs {
            let sig = match sig {
                Ok(s) => s.signature,
                Err(e) => {
                    unparsable.get_or_insert(e.to_string());
                    continue;
                }
            };
            match self.check_one(&sig, &mut open) {
                Ok(good) => return Ok(good),
                Err(Check::Untrusted(issuer)) => untrusted.push(issuer),
                Err(Check::Failed(e)) => {
                    failed.get_or_insert(e);
                }
            }
        }
        if let Some(e) = failed {
            return Err(e);
        }
        if !untrusted.is_empty() {
            return Err(SignatureError::UntrustedKey {
                issuers: untrusted.join(", "),
            });
        }
        Err(unparsable.map_or(SignatureError::NoSignature, SignatureError::Unparsable))
    }

    fn check_one<R: Read>(
        &self,
        sig: &Signature,
        open: &mut impl FnMut() -> std::io::Result<R>,
    ) -> Result<GoodSignature, Check> {
        let issuer = issuer_name(sig);
        let mut candidate_failure = None;
        for trusted in &self.keys {
            let key = &trusted.key;
            let good = || GoodSignature {
                fingerprint: spaced(&format!("{:X}", key.fingerprint())),
                user_id: key
                    .details
                    .users
                    .first()
                    .map(|u| String::from_utf8_lossy(u.id.id()).into_owned()),
            };
            let name = spaced(&format!("{:X}", key.fingerprint()));
            if issued_by(sig, key.fingerprint(), key.legacy_key_id()) {
                let r = check_with(sig, key, &name, open, |sig, data| sig.verify(key, data));
                match r {
                    Ok(()) => return Ok(good()),
                    Err(e) => candidate_failure = Some(e),
                }
                continue;
            }
            for sub in &key.public_subkeys {
                if !issued_by(sig, sub.key.fingerprint(), sub.key.legacy_key_id()) {
                    continue;
                }
                // A subkey speaks for the key only if the key bound it
                // for signing (binding + back-signature checked by rPGP).
                let bound = sub.verify_bindings(&key.primary_key).is_ok()
                    && sub.signatures.iter().any(|s| s.key_flags().sign());
                if !bound {
                    candidate_failure = Some(SignatureError::Bad {
                        key: name.clone(),
                        detail: "made by a subkey the key has not bound for signing".to_owned(),
                    });
                    continue;
                }
                match check_with(sig, key, &name, open, |sig, data| {
                    sig.verify(&sub.key, data)
                }) {
                    Ok(()) => return Ok(good()),
                    Err(e) => candidate_failure = Some(e),
                }
            }
        }
        match candidate_failure {
            Some(e) => Err(Check::Failed(e)),
            None => Err(Check::Untrusted(issuer)),
        }
    }
}

enum Check {
    Untrusted(String),
    Failed(SignatureError),
}

/// The policy checks shared by primary-key and subkey signatures, then the
/// cryptographic check itself.
fn check_with<R: Read>(
    sig: &Signature,
    key: &SignedPublicKey,
    name: &str,
    open: &mut impl FnMut() -> std::io::Result<R>,
    verify: impl FnOnce(&Signature, R) -> pgp::errors::Result<()>,
) -> Result<(), SignatureError> {
    if !matches!(sig.typ(), Some(SignatureType::Binary | SignatureType::Text)) {
        return Err(SignatureError::Bad {
            key: name.to_owned(),
            detail: format!("not a data signature ({:?})", sig.typ()),
        });
    }
    let hash = sig.hash_alg();
    let strong = matches!(
        hash,
        Some(
            HashAlgorithm::Sha256
                | HashAlgorithm::Sha384
                | HashAlgorithm::Sha512
                | HashAlgorithm::Sha224
                | HashAlgorithm::Sha3_256
                | HashAlgorithm::Sha3_512
        )
    );
    if !strong {
        return Err(SignatureError::WeakHash {
            key: name.to_owned(),
            hash: hash.map_or_else(|| "an unknown hash".to_owned(), |h| h.to_string()),
        });
    }
    if is_revoked(key) {
        return Err(SignatureError::Revoked {
            key: name.to_owned(),
        });
    }
    let data = open().map_err(SignatureError::Read)?;
    verify(sig, data).map_err(|e| match e {
        pgp::errors::Error::IO { source, .. } => SignatureError::Read(source),
        e => SignatureError::Bad {
            key: name.to_owned(),
            detail: bad_detail(&e.to_string()),
        },
    })
}

/// rPGP's wording for a failed check, made fit for one line.
fn bad_detail(msg: &str) -> String {
    if msg.contains("signed hash value") {
        // The digest's first two bytes, stored in the signature, differ.
        return "the data's digest does not match".to_owned();
    }
    msg.lines().next().unwrap_or(msg).trim().to_owned()
}

fn is_revoked(key: &SignedPublicKey) -> bool {
    key.details
        .revocation_signatures
        .iter()
        .any(|r| r.verify_key(&key.primary_key).is_ok())
}

fn issued_by(sig: &Signature, fp: pgp::types::Fingerprint, id: pgp::types::KeyId) -> bool {
    sig.issuer_fingerprint().iter().any(|f| **f == fp)
        || sig.issuer_key_id().iter().any(|k| **k == id)
}

fn issuer_name(sig: &Signature) -> String {
    if let Some(fp) = sig.issuer_fingerprint().first() {
        return format!("key {}", spaced(&format!("{fp:X}")));
    }
    match sig.issuer_key_id().first() {
        Some(id) => format!("key id {}", crate::digest::hex(id.as_ref()).to_uppercase()),
        None => "an unnamed key".to_owned(),
    }
}

/// `843938DF228D…` → `8439 38DF 228D …`.
fn spaced(hex: &str) -> String {
    hex.as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    const SUMS: &[u8] = include_bytes!("../../tests/fixtures/signatures/ubuntu-20.04.1-SHA256SUMS");
    const SUMS_GPG: &[u8] =
        include_bytes!("../../tests/fixtures/signatures/ubuntu-20.04.1-SHA256SUMS.gpg");

    #[test]
    fn pinned_keys_parse_with_their_documented_fingerprints() {
        assert_eq!(
            Keyring::pinned(Publisher::Ubuntu).fingerprints(),
            ["8439 38DF 228D 22F7 B374 2BC0 D94A A3F0 EFE2 1092"]
        );
        assert_eq!(
            Keyring::pinned(Publisher::Armbian).fingerprints(),
            ["DF00 FAF1 C577 104B 50BF 1D00 93D6 889F 9F0E 78D5"]
        );
        assert_eq!(
            Keyring::pinned(Publisher::UbuntuCloud).fingerprints(),
            ["D2EB 4462 6FDD C30B 513D 5BB7 1A5D 6C4C 7DB8 7C81"]
        );
        assert_eq!(Keyring::all_pinned().fingerprints().len(), 3);
    }

    #[test]
    fn a_real_ubuntu_signature_verifies_with_the_pinned_key() {
        let ring = Keyring::pinned(Publisher::Ubuntu);
        let good = ring.verify(SUMS_GPG, || Ok(SUMS)).unwrap();
        assert_eq!(
            good.fingerprint,
            "8439 38DF 228D 22F7 B374 2BC0 D94A A3F0 EFE2 1092"
        );
        assert_eq!(
            good.user_id.as_deref(),
            Some("Ubuntu CD Image Automatic Signing Key (2012) <cdimage@ubuntu.com>")
        );
        let mut altered = SUMS.to_vec();
        altered[0] ^= 1;
        let e = ring.verify(SUMS_GPG, || Ok(&altered[..])).unwrap_err();
        assert!(matches!(e, SignatureError::Bad { .. }), "{e}");
        let e = Keyring::pinned(Publisher::Armbian)
            .verify(SUMS_GPG, || Ok(SUMS))
            .unwrap_err();
        assert!(
            e.to_string()
                .contains("signed by key 8439 38DF 228D 22F7 B374 2BC0 D94A A3F0 EFE2 1092"),
            "{e}"
        );
        let e = ring.verify(b"not a signature", || Ok(SUMS)).unwrap_err();
        assert!(
            matches!(
                e,
                SignatureError::Unparsable(_) | SignatureError::NoSignature
            ),
            "{e}"
        );
    }
}
