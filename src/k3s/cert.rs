//! X.509 for the k3s certificate authorities (`k3s::pki`): P-256 keys,
//! self-signed CA certificates and client certificates they sign, written
//! as PEM, and the checks a stored certificate must pass before it is used.
//!
//! Signatures are ECDSA P-256 with SHA-256 and RFC 6979 nonces (p256's
//! `SigningKey`), so the same key, fields and dates always give the same
//! certificate bytes; the only randomness is the key and the serial number,
//! both drawn by the caller from the state directory's `Entropy`.

use std::time::Duration;

use p256::SecretKey;
use p256::ecdsa::signature::{Signer, Verifier};
use p256::ecdsa::{DerSignature, SigningKey, VerifyingKey};
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::elliptic_curve::zeroize::Zeroizing;
use p256::pkcs8::{DecodePrivateKey, EncodePublicKey};
use x509_cert::certificate::Version;
use x509_cert::der::asn1::{BitString, GeneralizedTime, OctetString, UtcTime};
use x509_cert::der::oid::AssociatedOid;
use x509_cert::der::oid::db::rfc5280::ID_KP_CLIENT_AUTH;
use x509_cert::der::oid::db::rfc5912::{ECDSA_WITH_SHA_256, SECP_256_R_1};
use x509_cert::der::pem::LineEnding;
use x509_cert::der::{Decode, DecodePem, Encode, EncodePem};
use x509_cert::ext::Extension;
use x509_cert::ext::pkix::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, KeyUsages,
    SubjectKeyIdentifier,
};
use x509_cert::name::Name;
use x509_cert::serial_number::SerialNumber;
use x509_cert::spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};
use x509_cert::time::{Time, Validity};
use x509_cert::{Certificate, TbsCertificate};

use sha2::{Digest, Sha256};

/// Bytes of a certificate serial number: 128 bits, as RFC 5280 allows
/// (at most 20 octets) and CAs commonly use.
pub const SERIAL_BYTES: usize = 16;

/// What a certificate is for: a CA of its own, or a client signed by one.
pub enum Role<'a> {
    /// Self-signed, CA:TRUE, keyCertSign + digitalSignature.
    Ca,
    /// CA:FALSE, digitalSignature, extKeyUsage clientAuth, signed by `issuer`.
    Client {
        issuer: &'a Issued,
        issuer_key: &'a SecretKey,
    },
}

/// A certificate in both forms: parsed, and the exact PEM text kept or
/// written (the bytes k3s hashes for a join token).
#[derive(Debug, Clone)]
pub struct Issued {
    pub cert: Certificate,
    pub pem: String,
}

impl Issued {
    pub fn not_after(&self) -> i64 {
        secs(self.cert.tbs_certificate.validity.not_after)
    }

    pub fn subject(&self) -> &Name {
        &self.cert.tbs_certificate.subject
    }
}

fn secs(t: Time) -> i64 {
    i64::try_from(t.to_unix_duration().as_secs()).unwrap_or(i64::MAX)
}

/// The fields of a new certificate.
pub struct Request<'a> {
    /// RFC 4514 text: `CN=k3s-server-ca@1700000000` or
    /// `CN=homelab-image-admin,O=system:masters`.
    pub subject: &'a str,
    pub serial: [u8; SERIAL_BYTES],
    pub not_before: i64,
    pub not_after: i64,
    pub role: Role<'a>,
}

/// A new P-256 private key from 32 random bytes; `None` for the (about
/// 2^-32) byte strings that are not a valid scalar, so the caller draws again.
pub fn key_from_bytes(bytes: &[u8; 32]) -> Option<SecretKey> {
    SecretKey::from_slice(bytes).ok()
}

/// A private key as PEM: SEC 1 `EC PRIVATE KEY` with the named curve, what
/// k3s (Go's `x509.MarshalECPrivateKey`) writes. p256's own `to_sec1_pem`
/// leaves the curve out, and both Go (kubectl: "tls: failed to parse
/// private key") and OpenSSL ("unsupported") refuse such a key.
pub fn key_pem(key: &SecretKey) -> Result<String, String> {
    let private = Zeroizing::new(key.to_bytes());
    let public = key.public_key().to_encoded_point(false);
    let der = Zeroizing::new(
        sec1::EcPrivateKey {
            private_key: &private,
            parameters: Some(sec1::EcParameters::NamedCurve(SECP_256_R_1)),
            public_key: Some(public.as_bytes()),
        }
        .to_der()
        .map_err(|e| format!("encoding a private key: {e}"))?,
    );
    x509_cert::der::pem::encode_string("EC PRIVATE KEY", LineEnding::LF, &der)
        .map_err(|e| format!("encoding a private key: {e}"))
}

/// Reads a P-256 private key in SEC 1 (`EC PRIVATE KEY`) or PKCS #8
/// (`PRIVATE KEY`) PEM; the error says what the file should hold.
pub fn parse_key(text: &str) -> Result<SecretKey, String> {
    let label = text
        .lines()
        .map(str::trim)
        .find(|l| l.starts_with("-----BEGIN "))
        .unwrap_or("");
    let parsed = match label {
        "-----BEGIN EC PRIVATE KEY-----" => {
            SecretKey::from_sec1_pem(text).map_err(|e| e.to_string())
        }
        "-----BEGIN PRIVATE KEY-----" => SecretKey::from_pkcs8_pem(text).map_err(|e| e.to_string()),
        "" => return Err("is not a PEM private key (no -----BEGIN line)".to_owned()),
        other => {
            return Err(format!(
                "holds {}, not a P-256 private key (EC PRIVATE KEY or PRIVATE KEY)",
                other.trim_matches('-').trim_start_matches("BEGIN ")
            ));
        }
    };
    parsed.map_err(|e| format!("is not a readable P-256 private key ({e})"))
}

/// Makes and signs a certificate for `key`.
pub fn issue(key: &SecretKey, req: &Request<'_>) -> Result<Issued, String> {
    let subject: Name = req
        .subject
        .parse()
        .map_err(|e| format!("the subject {:?}: {e}", req.subject))?;
    let spki = spki_of(key)?;
    let own_id = key_id(&spki);
    let mut serial = req.serial;
    // A positive INTEGER with no leading zero octet: RFC 5280 wants a
    // positive serial, and DER forbids a redundant leading zero.
    serial[0] = (serial[0] & 0x7f) | 0x40;
    let serial = SerialNumber::new(&serial).map_err(|e| format!("the serial number: {e}"))?;
    let (issuer, signer, extensions) = match &req.role {
        Role::Ca => (
            subject.clone(),
            SigningKey::from(key),
            vec![
                extension(
                    true,
                    &BasicConstraints {
                        ca: true,
                        path_len_constraint: None,
                    },
                )?,
                extension(
                    true,
                    &KeyUsage(KeyUsages::DigitalSignature | KeyUsages::KeyCertSign),
                )?,
                extension(false, &SubjectKeyIdentifier(octets(own_id.to_vec())?))?,
            ],
        ),
        Role::Client { issuer, issuer_key } => {
            let issuer_id = key_id(&issuer.cert.tbs_certificate.subject_public_key_info);
            (
                issuer.subject().clone(),
                SigningKey::from(*issuer_key),
                vec![
                    extension(
                        true,
                        &BasicConstraints {
                            ca: false,
                            path_len_constraint: None,
                        },
                    )?,
                    extension(true, &KeyUsage(KeyUsages::DigitalSignature.into()))?,
                    extension(false, &ExtendedKeyUsage(vec![ID_KP_CLIENT_AUTH]))?,
                    extension(
                        false,
                        &AuthorityKeyIdentifier {
                            key_identifier: Some(octets(issuer_id.to_vec())?),
                            ..Default::default()
                        },
                    )?,
                ],
            )
        }
    };
    let tbs = TbsCertificate {
        version: Version::V3,
        serial_number: serial,
        signature: ecdsa_sha256(),
        issuer,
        validity: Validity {
            not_before: time(req.not_before)?,
            not_after: time(req.not_after)?,
        },
        subject,
        subject_public_key_info: spki,
        issuer_unique_id: None,
        subject_unique_id: None,
        extensions: Some(extensions),
    };
    let tbs_der = tbs
        .to_der()
        .map_err(|e| format!("encoding a certificate: {e}"))?;
    let signature: DerSignature = signer.sign(&tbs_der);
    let cert = Certificate {
        tbs_certificate: tbs,
        signature_algorithm: ecdsa_sha256(),
        signature: BitString::from_bytes(signature.as_bytes())
            .map_err(|e| format!("encoding a signature: {e}"))?,
    };
    let pem = cert
        .to_pem(LineEnding::LF)
        .map_err(|e| format!("encoding a certificate: {e}"))?;
    Ok(Issued { cert, pem })
}

/// Reads a PEM file that must hold exactly one certificate.
pub fn parse_cert(text: &str) -> Result<Issued, String> {
    let count = text.matches("-----BEGIN CERTIFICATE-----").count();
    if count == 0 {
        return Err("is not a PEM certificate (no -----BEGIN CERTIFICATE----- line)".to_owned());
    }
    if count > 1 {
        return Err(format!(
            "holds {count} certificates; this file holds one self-signed certificate"
        ));
    }
    let cert = Certificate::from_pem(text.trim_start())
        .map_err(|e| format!("is not a readable X.509 certificate ({e})"))?;
    Ok(Issued {
        cert,
        pem: text.to_owned(),
    })
}

/// Checks that `issued` is a CA certificate, self-signed by `key`.
pub fn check_ca(issued: &Issued, key: &SecretKey) -> Result<(), String> {
    let tbs = &issued.cert.tbs_certificate;
    check_key_matches(issued, key)?;
    match find::<BasicConstraints>(tbs)? {
        Some(bc) if bc.ca => {}
        _ => return Err("is not a CA certificate (no basicConstraints CA:TRUE)".to_owned()),
    }
    if let Some(usage) = find::<KeyUsage>(tbs)?
        && !usage.0.contains(KeyUsages::KeyCertSign)
    {
        return Err("is a CA certificate whose keyUsage lacks keyCertSign".to_owned());
    }
    if tbs.issuer != tbs.subject {
        return Err(format!(
            "is not self-signed (issuer {}, subject {})",
            tbs.issuer, tbs.subject
        ));
    }
    verify(issued, &key.public_key().into())
        .map_err(|e| format!("is not signed by its own key ({e})"))
}

/// Checks that `issued` is a certificate of `key` signed by the CA `ca`.
pub fn check_signed_by(
    issued: &Issued,
    key: &SecretKey,
    ca: &Issued,
    ca_key: &SecretKey,
) -> Result<(), String> {
    check_key_matches(issued, key)?;
    if issued.cert.tbs_certificate.issuer != *ca.subject() {
        return Err(format!(
            "was issued by {}, not by this client CA ({})",
            issued.cert.tbs_certificate.issuer,
            ca.subject()
        ));
    }
    verify(issued, &ca_key.public_key().into())
        .map_err(|e| format!("is not signed by the client CA's key ({e})"))
}

fn check_key_matches(issued: &Issued, key: &SecretKey) -> Result<(), String> {
    let ours = spki_of(key)?;
    if issued.cert.tbs_certificate.subject_public_key_info != ours {
        return Err("does not hold the public key of the private key beside it".to_owned());
    }
    Ok(())
}

fn verify(issued: &Issued, by: &VerifyingKey) -> Result<(), String> {
    if issued.cert.signature_algorithm.oid != ECDSA_WITH_SHA_256 {
        return Err(format!(
            "signed with algorithm {}; only ECDSA with SHA-256 is read",
            issued.cert.signature_algorithm.oid
        ));
    }
    let tbs = issued
        .cert
        .tbs_certificate
        .to_der()
        .map_err(|e| e.to_string())?;
    let sig = DerSignature::from_bytes(issued.cert.signature.raw_bytes())
        .map_err(|e| format!("a damaged signature: {e}"))?;
    by.verify(&tbs, &sig)
        .map_err(|_| "the signature does not verify".to_owned())
}

/// The decoded extension of type `T`, if the certificate has one.
fn find<'a, T: AssociatedOid + Decode<'a>>(tbs: &'a TbsCertificate) -> Result<Option<T>, String> {
    let Some(ext) = tbs
        .extensions
        .iter()
        .flatten()
        .find(|e| e.extn_id == T::OID)
    else {
        return Ok(None);
    };
    T::from_der(ext.extn_value.as_bytes())
        .map(Some)
        .map_err(|e| format!("has a damaged extension {}: {e}", T::OID))
}

fn extension<T: AssociatedOid + Encode>(critical: bool, value: &T) -> Result<Extension, String> {
    let der = value
        .to_der()
        .map_err(|e| format!("encoding an extension: {e}"))?;
    Ok(Extension {
        extn_id: T::OID,
        critical,
        extn_value: octets(der)?,
    })
}

fn octets(bytes: Vec<u8>) -> Result<OctetString, String> {
    OctetString::new(bytes).map_err(|e| format!("encoding an octet string: {e}"))
}

fn spki_of(key: &SecretKey) -> Result<SubjectPublicKeyInfoOwned, String> {
    let der = key
        .public_key()
        .to_public_key_der()
        .map_err(|e| format!("encoding a public key: {e}"))?;
    SubjectPublicKeyInfoOwned::from_der(der.as_bytes())
        .map_err(|e| format!("encoding a public key: {e}"))
}

/// A key identifier: the leftmost 160 bits of the SHA-256 of the public
/// key bits (RFC 7093 section 2, method 1).
fn key_id(spki: &SubjectPublicKeyInfoOwned) -> [u8; 20] {
    let digest = Sha256::digest(spki.subject_public_key.raw_bytes());
    let mut id = [0u8; 20];
    id.copy_from_slice(&digest[..20]);
    id
}

fn ecdsa_sha256() -> AlgorithmIdentifierOwned {
    AlgorithmIdentifierOwned {
        oid: ECDSA_WITH_SHA_256,
        parameters: None,
    }
}

/// UTCTime through 2049 and GeneralizedTime after, as RFC 5280 4.1.2.5 says.
fn time(secs: i64) -> Result<Time, String> {
    let since = Duration::from_secs(u64::try_from(secs).map_err(|_| "a date before 1970")?);
    match UtcTime::from_unix_duration(since) {
        Ok(t) => Ok(Time::UtcTime(t)),
        Err(_) => GeneralizedTime::from_unix_duration(since)
            .map(Time::GeneralTime)
            .map_err(|e| format!("the date {secs}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> SecretKey {
        key_from_bytes(&[seed; 32]).unwrap()
    }

    fn ca(k: &SecretKey) -> Issued {
        issue(
            k,
            &Request {
                subject: "CN=test-ca@1",
                serial: [7; SERIAL_BYTES],
                not_before: 1_700_000_000,
                not_after: 2_000_000_000,
                role: Role::Ca,
            },
        )
        .unwrap()
    }

    #[test]
    fn signing_is_deterministic_and_round_trips() {
        let k = key(3);
        let (a, b) = (ca(&k), ca(&k));
        assert_eq!(a.pem, b.pem);
        let parsed = parse_cert(&a.pem).unwrap();
        check_ca(&parsed, &k).unwrap();
        assert_eq!(parsed.not_after(), 2_000_000_000);
        let text = key_pem(&k).unwrap();
        // SEQUENCE of 0x77 bytes with [0] prime256v1: what Go and OpenSSL write.
        assert!(
            text.starts_with("-----BEGIN EC PRIVATE KEY-----\nMHcCAQEE"),
            "{text}"
        );
        assert_eq!(parse_key(&text).unwrap().to_bytes(), k.to_bytes());
    }

    #[test]
    fn a_ca_with_another_key_or_a_client_cert_is_not_a_ca() {
        let (k, other) = (key(3), key(4));
        let c = ca(&k);
        assert!(check_ca(&c, &other).unwrap_err().contains("public key"));
        let client = issue(
            &other,
            &Request {
                subject: "CN=u,O=system:masters",
                serial: [1; SERIAL_BYTES],
                not_before: 1_700_000_000,
                not_after: 1_800_000_000,
                role: Role::Client {
                    issuer: &c,
                    issuer_key: &k,
                },
            },
        )
        .unwrap();
        check_signed_by(&client, &other, &c, &k).unwrap();
        assert!(check_ca(&client, &other).unwrap_err().contains("not a CA"));
        let wrong = ca(&other);
        assert!(check_signed_by(&client, &other, &wrong, &other).is_err());
    }

    #[test]
    fn dates_after_2049_use_generalized_time() {
        assert!(matches!(time(2_524_608_000), Ok(Time::GeneralTime(_))));
        assert!(matches!(time(2_524_607_999), Ok(Time::UtcTime(_))));
    }
}
