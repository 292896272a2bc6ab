//! `SshPublicKey`: one authorized_keys line (options, key type, base64 blob,
//! comment), checked by `ssh-key` when the profile is loaded so a truncated
//! or mistyped key is an error here, not a locked-out node.

use std::fmt;
use std::str::FromStr;

use ssh_key::authorized_keys::Entry;
use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{shown:?} is not an SSH public key: {reason}")]
pub struct SshKeyError {
    shown: String,
    reason: String,
}

/// A parsed authorized_keys entry; keeps the user's text (trimmed) so the
/// rendered file carries their options and comment unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshPublicKey {
    line: String,
    fingerprint: String,
}

impl SshPublicKey {
    pub fn parse(s: &str) -> Result<Self, SshKeyError> {
        let line = s.trim();
        let err = |reason: String| SshKeyError {
            // Long keys are shortened in messages: the head says which one.
            shown: line.chars().take(40).collect(),
            reason,
        };
        if line.contains('\n') {
            return Err(err("it spans more than one line".to_owned()));
        }
        if line.is_empty() || line.starts_with('#') {
            return Err(err("it is empty".to_owned()));
        }
        let entry = Entry::from_str(line).map_err(|e| err(e.to_string()))?;
        let fingerprint = entry
            .public_key()
            .fingerprint(ssh_key::HashAlg::Sha256)
            .to_string();
        Ok(Self {
            line: line.to_owned(),
            fingerprint,
        })
    }

    /// Every key in an authorized_keys-style text (blank lines and `#`
    /// comments skipped), with the 1-based line of each failure.
    pub fn parse_many(text: &str) -> Result<Vec<Self>, (usize, SshKeyError)> {
        text.lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
            .map(|(i, l)| Self::parse(l).map_err(|e| (i + 1, e)))
            .collect()
    }

    pub fn as_str(&self) -> &str {
        &self.line
    }

    /// `SHA256:…`, as `ssh-keygen -lf` prints it.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }
}

impl fmt::Display for SshPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.line)
    }
}

crate::profile::newtype::string_serde!(SshPublicKey, SshPublicKey::parse);

#[cfg(test)]
mod tests {
    use super::*;

    const ED: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOpKbGPinFIKvvVQexMuxfmVR3auvr57kkIe6mkURtIs alice@laptop";

    #[test]
    fn parses_keys_with_options_and_comments() {
        let k = SshPublicKey::parse(ED).unwrap();
        assert!(k.fingerprint().starts_with("SHA256:"));
        let with_opts = format!("from=\"10.0.0.0/8\",no-pty {ED}");
        assert_eq!(SshPublicKey::parse(&with_opts).unwrap().as_str(), with_opts);
    }

    #[test]
    fn refuses_truncated_and_garbage_keys() {
        let truncated = &ED[..40];
        for bad in [
            truncated,
            "ssh-ed25519 not-base64!",
            "hello",
            "",
            "# comment",
        ] {
            assert!(SshPublicKey::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn parse_many_reports_the_line() {
        let text = format!("# keys\n{ED}\n\nssh-rsa AAAA\n");
        let (line, _) = SshPublicKey::parse_many(&text).unwrap_err();
        assert_eq!(line, 4);
    }
}
