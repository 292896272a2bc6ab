//! `StatusUrl`: where a node's first-boot unit reports its state changes
//! (`status_url: http://HOST[:PORT]`, the status server of `serve`).
//!
//! Plain `http` only, and nothing but a host and a port: the first-boot
//! script speaks HTTP through bash's `/dev/tcp` (an image may have no curl,
//! and never a TLS client that would trust a laptop's certificate), and it
//! appends `/api/nodes/NODE/status` itself. The host is an IPv4 address or
//! a DNS name, so every character is safe in the script and the env file.

use std::fmt;

use thiserror::Error;

/// Why a status URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{url:?} is not a status URL: {why}; write it as http://HOST or http://HOST:PORT")]
pub struct StatusUrlError {
    url: String,
    why: &'static str,
}

/// `http://HOST[:PORT]`, the status server a node reports to.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StatusUrl {
    host: String,
    port: u16,
}

/// A DNS name's limit (RFC 1035), also what bounds the URL.
const MAX_HOST: usize = 253;

impl StatusUrl {
    pub fn parse(s: &str) -> Result<Self, StatusUrlError> {
        let bad = |why| StatusUrlError {
            url: s.to_owned(),
            why,
        };
        let rest = match s.split_once("://") {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
            Some((scheme, _)) if scheme.eq_ignore_ascii_case("https") => {
                return Err(bad(
                    "only http is supported (the first-boot script has no TLS client)",
                ));
            }
            _ => return Err(bad("it does not start with http://")),
        };
        // One trailing slash is what people paste; a real path is not ours
        // to pick (the script appends /api/nodes/NODE/status).
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains(['/', '?', '#']) {
            return Err(bad("it has a path, query or fragment"));
        }
        if rest.contains('@') {
            return Err(bad("it has a user name or password"));
        }
        if rest.starts_with('[') {
            return Err(bad("IPv6 addresses are not supported"));
        }
        let (host, port) = match rest.split_once(':') {
            Some((h, p)) => {
                if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(bad("the port is not a number from 1 to 65535"));
                }
                let port: u16 = p
                    .parse()
                    .ok()
                    .filter(|&n| n != 0)
                    .ok_or_else(|| bad("the port is not a number from 1 to 65535"))?;
                (h, port)
            }
            None => (rest, 80),
        };
        if !valid_host(host) {
            return Err(bad(
                "the host is not an IPv4 address or a DNS name (letters, digits, '-' and '.')",
            ));
        }
        Ok(Self {
            host: host.to_ascii_lowercase(),
            port,
        })
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn port(&self) -> u16 {
        self.port
    }
}

/// An IPv4 address or a DNS name: labels of 1-63 letters, digits and
/// inner hyphens. (Dotted digits that are no IPv4 address fail because a
/// DNS name's last label is not all digits.)
fn valid_host(host: &str) -> bool {
    if host.parse::<std::net::Ipv4Addr>().is_ok() {
        return true;
    }
    if host.is_empty() || host.len() > MAX_HOST {
        return false;
    }
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    host.split('.').all(label_ok)
        && !host
            .rsplit('.')
            .next()
            .is_some_and(|last| last.bytes().all(|b| b.is_ascii_digit()))
}

impl fmt::Display for StatusUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.port == 80 {
            write!(f, "http://{}", self.host)
        } else {
            write!(f, "http://{}:{}", self.host, self.port)
        }
    }
}

crate::profile::newtype::string_serde!(StatusUrl, StatusUrl::parse);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_urls_keep_host_and_port() {
        let u = StatusUrl::parse("http://192.168.1.5:8080/").unwrap();
        assert_eq!((u.host(), u.port()), ("192.168.1.5", 8080));
        assert_eq!(u.to_string(), "http://192.168.1.5:8080");
        let u = StatusUrl::parse("HTTP://Laptop.lan").unwrap();
        assert_eq!((u.host(), u.port()), ("laptop.lan", 80));
        assert_eq!(u.to_string(), "http://laptop.lan");
    }

    #[test]
    fn status_urls_refuse_what_the_script_cannot_reach() {
        for (bad, why) in [
            ("https://laptop.lan", "only http"),
            ("laptop.lan:8080", "does not start with http://"),
            ("ftp://laptop.lan", "does not start with http://"),
            ("http://laptop.lan/status", "path"),
            ("http://laptop.lan?x=1", "path"),
            ("http://u:p@laptop.lan", "user name"),
            ("http://[::1]:80", "IPv6"),
            ("http://laptop.lan:0", "port"),
            ("http://laptop.lan:65536", "port"),
            ("http://laptop.lan:", "port"),
            ("http://laptop.lan:+80", "port"),
            ("http://", "host"),
            ("http://la$ptop", "host"),
            ("http://a'b", "host"),
            ("http://-x.lan", "host"),
            ("http://300.1.1.1", "host"),
            ("http://a..b", "host"),
        ] {
            let e = StatusUrl::parse(bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
            assert!(e.contains("http://HOST:PORT"), "{bad}: {e}");
        }
    }
}
