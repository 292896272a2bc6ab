//! Password hashes: `PasswordHash` accepts only crypt(3) schemes that
//! libxcrypt on Ubuntu 22.04+/Debian 12 verifies and that are not broken
//! (yescrypt `$y$`, SHA-512 `$6$`, SHA-256 `$5$`), and `hash_sha512`
//! produces one from a plaintext with an injected salt.

use std::fmt;

use sha_crypt::{Algorithm, Params, PasswordHasher, ShaCrypt};
use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PasswordError {
    #[error(
        "password hash {0:?} uses an unsupported scheme: use yescrypt ($y$), \
         SHA-512 ($6$) or SHA-256 ($5$), e.g. from `mkpasswd -m yescrypt`"
    )]
    UnsupportedScheme(String),
    #[error("password hash {0:?} is malformed for its scheme")]
    Malformed(String),
    #[error("hashing the password failed: {0}")]
    Hashing(String),
}

/// The salt for a SHA-crypt hash: 12 random bytes, which base64-encode to
/// the 16 characters glibc/libxcrypt keep. (sha-crypt's own default salt is
/// 22 characters; libxcrypt truncates it to 16, the re-computed string then
/// differs from the stored one and pam_unix refuses the login.)
pub type Salt = [u8; 12];

/// A crypt(3) hash string in a scheme we accept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswordHash(String);

/// The crypt(3) base64 alphabet.
fn is_crypt64(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'/')
}

impl PasswordHash {
    pub fn parse(s: &str) -> Result<Self, PasswordError> {
        let malformed = || PasswordError::Malformed(s.to_owned());
        let fields: Vec<&str> = s.split('$').collect();
        // "$6$salt$hash" splits into ["", "6", "salt", "hash"].
        match fields.as_slice() {
            ["", "y", params, salt, hash] => {
                let ok = !params.is_empty()
                    && is_crypt64(params)
                    && is_crypt64(salt)
                    && hash.len() == 43
                    && is_crypt64(hash);
                ok.then(|| Self(s.to_owned())).ok_or_else(malformed)
            }
            ["", id @ ("5" | "6"), rest @ ..] => {
                let (salt, hash) = match rest {
                    [rounds, salt, hash] if rounds.starts_with("rounds=") => {
                        let n = rounds.trim_start_matches("rounds=");
                        if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
                            return Err(malformed());
                        }
                        (*salt, *hash)
                    }
                    [salt, hash] => (*salt, *hash),
                    _ => return Err(malformed()),
                };
                let hash_len = if *id == "6" { 86 } else { 43 };
                let ok = salt.len() <= 16
                    && is_crypt64(salt)
                    && hash.len() == hash_len
                    && is_crypt64(hash);
                ok.then(|| Self(s.to_owned())).ok_or_else(malformed)
            }
            _ => Err(PasswordError::UnsupportedScheme(shorten(s))),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Keeps a refused hash (which may be a pasted plaintext) out of messages.
fn shorten(s: &str) -> String {
    let head: String = s.chars().take(4).collect();
    format!("{head}…")
}

impl fmt::Display for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

crate::profile::newtype::string_serde!(PasswordHash, PasswordHash::parse);

/// SHA-512-crypt of `password` with `salt`, at the scheme's default 5000
/// rounds, as `$6$rounds=5000$<16 chars>$<86 chars>`.
pub fn hash_sha512(password: &str, salt: &Salt) -> Result<PasswordHash, PasswordError> {
    let hasher = ShaCrypt::new(Algorithm::Sha512Crypt, Params::RECOMMENDED);
    let hash = hasher
        .hash_password_with_salt(password.as_bytes(), salt)
        .map_err(|e| PasswordError::Hashing(e.to_string()))?;
    PasswordHash::parse(hash.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_supported_schemes() {
        let sha512 = hash_sha512("pw", &[7; 12]).unwrap();
        assert!(sha512.as_str().starts_with("$6$rounds=5000$"));
        let salt = sha512.as_str().split('$').nth(3).unwrap();
        assert_eq!(salt.len(), 16, "libxcrypt keeps 16 salt characters");
        assert!(
            PasswordHash::parse(
                "$y$j9T$F5Jx5fExrKuPp53xLKQ..1$X3DX6M94c7o.9agCG9G317fhZg9SqC.5i5rd.RhAtQ7"
            )
            .is_ok()
        );
        assert!(
            PasswordHash::parse("$5$saltsalt$5B8vYYiY.CVt1RlTTf8KbXBH3hsxY/GNooZF/8PWB00").is_ok()
        );
    }

    #[test]
    fn refuses_weak_or_malformed_hashes() {
        assert!(matches!(
            PasswordHash::parse("$1$abc$def"),
            Err(PasswordError::UnsupportedScheme(_))
        ));
        assert!(matches!(
            PasswordHash::parse("hunter2"),
            Err(PasswordError::UnsupportedScheme(_))
        ));
        assert!(matches!(
            PasswordHash::parse("$6$salt$short"),
            Err(PasswordError::Malformed(_))
        ));
        assert!(matches!(
            PasswordHash::parse("$y$$salt$x"),
            Err(PasswordError::Malformed(_))
        ));
    }

    #[test]
    fn refused_plaintext_is_not_echoed() {
        let msg = PasswordHash::parse("correct horse battery")
            .unwrap_err()
            .to_string();
        assert!(!msg.contains("horse"), "{msg}");
    }
}
