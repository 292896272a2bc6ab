//! Host and domain names (RFC 1123). A `Hostname` is one label because it
//! becomes the MicroCloud member name, `/etc/hostname` and the cloud-init
//! `local-hostname`; a `DomainName` is one or more labels joined by dots.

use std::fmt;

use thiserror::Error;

/// Why a host or domain name was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NameError {
    #[error("{0:?} is empty")]
    Empty(String),
    #[error("{0:?} is longer than {1} characters")]
    TooLong(String, usize),
    #[error(
        "{0:?} is not an RFC 1123 name: use lower-case letters, digits and '-', \
         not at the start or end of a label"
    )]
    BadLabel(String),
    #[error("{0:?} is all digits, which resolvers take for an address")]
    Numeric(String),
}

/// The longest label RFC 1123 allows.
const MAX_LABEL: usize = 63;
/// The longest whole domain name RFC 1123 allows.
const MAX_NAME: usize = 253;

/// Checks one RFC 1123 label; upper case is refused so that the name the
/// user writes is the name `hostname` prints (MicroCloud compares them).
fn check_label(label: &str, whole: &str) -> Result<(), NameError> {
    let bytes = label.as_bytes();
    let valid_chars = bytes
        .iter()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-');
    let (Some(first), Some(last)) = (bytes.first(), bytes.last()) else {
        return Err(NameError::BadLabel(whole.to_owned()));
    };
    if !valid_chars || *first == b'-' || *last == b'-' {
        return Err(NameError::BadLabel(whole.to_owned()));
    }
    if label.len() > MAX_LABEL {
        return Err(NameError::TooLong(whole.to_owned(), MAX_LABEL));
    }
    Ok(())
}

/// A single-label host name such as `pi1`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Hostname(String);

impl Hostname {
    pub fn parse(s: &str) -> Result<Self, NameError> {
        if s.is_empty() {
            return Err(NameError::Empty(s.to_owned()));
        }
        if s.contains('.') {
            return Err(NameError::BadLabel(s.to_owned()));
        }
        check_label(s, s)?;
        if s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(NameError::Numeric(s.to_owned()));
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A DNS domain such as `lab.home.arpa`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DomainName(String);

impl DomainName {
    pub fn parse(s: &str) -> Result<Self, NameError> {
        if s.is_empty() {
            return Err(NameError::Empty(s.to_owned()));
        }
        if s.len() > MAX_NAME {
            return Err(NameError::TooLong(s.to_owned(), MAX_NAME));
        }
        for label in s.split('.') {
            check_label(label, s)?;
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

crate::profile::newtype::string_serde!(Hostname, Hostname::parse);
crate::profile::newtype::string_serde!(DomainName, DomainName::parse);

impl fmt::Display for Hostname {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for DomainName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_rfc1123_labels() {
        for ok in ["pi1", "a", "rock-5b", "1e3", "x0", &"a".repeat(63)] {
            assert!(Hostname::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn refuses_bad_hostnames() {
        for bad in [
            "",
            "-pi",
            "pi-",
            "Pi1",
            "pi_1",
            "pi.lab",
            "pi 1",
            "123",
            "é",
            &"a".repeat(64),
        ] {
            assert!(Hostname::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn domains_are_dotted_labels() {
        assert!(DomainName::parse("lab.home.arpa").is_ok());
        assert!(DomainName::parse("yes").is_ok());
        for bad in ["", "lab..arpa", ".lab", "lab.", "Lab.arpa", "a_b.c"] {
            assert!(DomainName::parse(bad).is_err(), "{bad}");
        }
    }
}
