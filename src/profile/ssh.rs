//! `SshPublicKey`: one authorized_keys line — options, key type, base64
//! blob, comment — checked when the profile is loaded so a truncated or
//! mistyped key is an error here, not a locked-out node.
//!
//! The options are split off as sshd(8) does (up to the first blank outside
//! double quotes, `\"` escaping a quote) and each must be one sshd knows:
//! sshd refuses the whole line over an unknown option. The key itself is
//! parsed by `ssh-key`. (`ssh_key::authorized_keys::Entry` splits options at
//! the first space and takes a line with options but no comment for a bare
//! key, so it refuses `from="10.0.0.0/8" ssh-ed25519 AAAA…`.)

use std::fmt;

use ssh_key::PublicKey;
use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{shown:?} is not an SSH public key: {reason}")]
pub struct SshKeyError {
    shown: String,
    reason: String,
}

/// Options that take no value (sshd(8), AUTHORIZED_KEYS FILE FORMAT).
const FLAGS: &[&str] = &[
    "agent-forwarding",
    "cert-authority",
    "no-agent-forwarding",
    "no-port-forwarding",
    "no-pty",
    "no-touch-required",
    "no-user-rc",
    "no-x11-forwarding",
    "port-forwarding",
    "pty",
    "restrict",
    "touch-required",
    "user-rc",
    "verify-required",
    "x11-forwarding",
];

/// Options written `name="value"`.
const VALUED: &[&str] = &[
    "command",
    "environment",
    "expiry-time",
    "from",
    "permitlisten",
    "permitopen",
    "principals",
    "tunnel",
];

/// Whether `word` names a public key type, so the line has no options.
fn is_key_type(word: &str) -> bool {
    word.starts_with("ssh-")
        || word.starts_with("ecdsa-sha2-")
        || word.starts_with("sk-ssh-")
        || word.starts_with("sk-ecdsa-")
}

/// Splits `line` into its options (possibly empty) and the key part.
fn split_options(line: &str) -> Result<(&str, &str), String> {
    let first = line.split([' ', '\t']).next().unwrap_or("");
    if is_key_type(first) {
        return Ok(("", line));
    }
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in line.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ' ' | '\t' if !quoted => {
                return Ok((&line[..i], line[i..].trim_start_matches([' ', '\t'])));
            }
            _ => {}
        }
    }
    if quoted {
        Err("a double quote in its options is not closed".to_owned())
    } else {
        Err("it has no key after its options".to_owned())
    }
}

/// The options split at commas outside quotes.
fn options(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => {
                out.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&text[start..]);
    out
}

/// Checks each option against sshd's list.
fn check_options(text: &str) -> Result<(), String> {
    if text.is_empty() {
        return Ok(());
    }
    for opt in options(text) {
        let (name, value) = match opt.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (opt, None),
        };
        let lower = name.to_ascii_lowercase();
        match value {
            None if FLAGS.contains(&lower.as_str()) => {}
            Some(v) if VALUED.contains(&lower.as_str()) => {
                if !(v.len() >= 2 && v.starts_with('"') && v.ends_with('"')) {
                    return Err(format!("option {name} needs a double-quoted value"));
                }
            }
            None if VALUED.contains(&lower.as_str()) => {
                return Err(format!("option {name} needs a value, as {name}=\"…\""));
            }
            Some(_) if FLAGS.contains(&lower.as_str()) => {
                return Err(format!("option {name} takes no value"));
            }
            _ => {
                return Err(format!(
                    "{name:?} is not an authorized_keys option sshd knows (sshd(8), \
                     AUTHORIZED_KEYS FILE FORMAT), and sshd skips a key with one"
                ));
            }
        }
    }
    Ok(())
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
        if let Some(c) = line.chars().find(|c| c.is_control() && *c != '\t') {
            return Err(err(format!(
                "it holds the control character U+{:04X}",
                u32::from(c)
            )));
        }
        if line.is_empty() || line.starts_with('#') {
            return Err(err("it is empty".to_owned()));
        }
        if line.starts_with("-----BEGIN") {
            return Err(err(
                "this is a private key; give the public key (the .pub file beside it)".to_owned(),
            ));
        }
        let (opts, key) = split_options(line).map_err(err)?;
        check_options(opts).map_err(err)?;
        let key = PublicKey::from_openssh(key).map_err(|e| err(e.to_string()))?;
        Ok(Self {
            line: line.to_owned(),
            fingerprint: key.fingerprint(ssh_key::HashAlg::Sha256).to_string(),
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

    const BARE: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOpKbGPinFIKvvVQexMuxfmVR3auvr57kkIe6mkURtIs";
    const ED: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOpKbGPinFIKvvVQexMuxfmVR3auvr57kkIe6mkURtIs alice@laptop";

    #[test]
    fn parses_keys_with_options_and_comments() {
        let k = SshPublicKey::parse(ED).unwrap();
        assert!(k.fingerprint().starts_with("SHA256:"));
        for line in [
            format!("from=\"10.0.0.0/8\",no-pty {ED}"),
            // Options and no comment: two spaces, still options.
            format!("from=\"10.0.0.0/8\" {BARE}"),
            format!("command=\"echo \\\"hi there\\\"\",restrict {ED}"),
            format!("NO-PTY\t{ED} with a spaced comment"),
        ] {
            let k = SshPublicKey::parse(&line).unwrap_or_else(|e| panic!("{line}: {e}"));
            assert_eq!(k.as_str(), line);
            assert_eq!(
                k.fingerprint(),
                SshPublicKey::parse(ED).unwrap().fingerprint()
            );
        }
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
    fn option_mistakes_are_named() {
        let why = |line: String| SshPublicKey::parse(&line).unwrap_err().to_string();
        assert!(
            why(format!("no-ptty {ED}")).contains("\"no-ptty\" is not an authorized_keys option")
        );
        assert!(why(format!("from=10.0.0.1 {ED}")).contains("double-quoted value"));
        assert!(why(format!("pty=\"x\" {ED}")).contains("takes no value"));
        assert!(why(format!("command=\"echo {ED}")).contains("not closed"));
        assert!(why(format!("{BARE} a\rb")).contains("U+000D"));
    }

    #[test]
    fn a_private_key_is_called_one() {
        let e = SshPublicKey::parse("-----BEGIN OPENSSH PRIVATE KEY-----")
            .unwrap_err()
            .to_string();
        assert!(e.contains("private key") && e.contains(".pub"), "{e}");
    }

    #[test]
    fn parse_many_reports_the_line() {
        let text = format!("# keys\n{ED}\n\nssh-rsa AAAA\n");
        let (line, _) = SshPublicKey::parse_many(&text).unwrap_err();
        assert_eq!(line, 4);
    }
}
