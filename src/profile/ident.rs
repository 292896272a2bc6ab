//! The small named strings of a profile, each parsed once: user and group
//! names, Debian package names, time zones, locales, keyboard layouts, snap
//! channels, NTP servers, Wi-Fi country codes, absolute target paths, disk
//! paths and file modes. Board and OS are closed sets (enums).

use std::fmt;

use thiserror::Error;

use crate::profile::hostname::DomainName;

/// Why a named string was refused: which kind, the text, and what is allowed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{} is not a valid {what}: {rule}", Shown(text))]
pub struct IdentError {
    what: &'static str,
    text: String,
    rule: &'static str,
}

/// The refused text, quoted and escaped; a long one is cut, with its
/// length, so a 6000-byte path does not fill the terminal.
struct Shown<'a>(&'a str);

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const KEEP: usize = 60;
        if self.0.chars().count() <= KEEP {
            return write!(f, "{:?}", self.0);
        }
        let head: String = self.0.chars().take(KEEP).collect();
        write!(f, "{head:?}… ({} bytes)", self.0.len())
    }
}

/// ext4's longest file name (NAME_MAX).
pub const NAME_MAX: usize = 255;
/// Linux's longest path, without its terminating NUL (PATH_MAX is 4096).
pub const PATH_MAX: usize = 4095;

/// Declares a string newtype whose values satisfy `$ok`.
macro_rules! ident {
    ($(#[$doc:meta])* $name:ident, $what:literal, $rule:literal, $ok:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(String);

        impl $name {
            pub fn parse(s: &str) -> Result<Self, IdentError> {
                let ok: fn(&str) -> bool = $ok;
                if ok(s) {
                    Ok(Self(s.to_owned()))
                } else {
                    Err(IdentError { what: $what, text: s.to_owned(), rule: $rule })
                }
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        crate::profile::newtype::string_serde!($name, $name::parse);
    };
}

fn all(s: &str, ok: impl Fn(u8) -> bool) -> bool {
    !s.is_empty() && s.bytes().all(ok)
}

/// A POSIX-ish account name as `useradd` accepts by default.
fn account_name(s: &str) -> bool {
    s.len() <= 32
        && s.bytes()
            .next()
            .is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
        && all(s, |b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-'
        })
}

ident!(
    /// A login name (`alice`).
    UserName, "user name", "lower-case letters, digits, '_' and '-', starting with a letter, at most 32", account_name
);
ident!(
    /// A group name (`sudo`, `adm`).
    GroupName, "group name", "lower-case letters, digits, '_' and '-', starting with a letter, at most 32", account_name
);
ident!(
    /// A Debian package name (`htop`, `libc6`, `g++`).
    PackageName, "package name", "lower-case letters, digits and '+', '-', '.', at least 2, starting alphanumeric",
    |s| s.len() >= 2
        && s.bytes().next().is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && all(s, |b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+-.".contains(&b))
);
ident!(
    /// An IANA time zone (`Europe/Berlin`, `Etc/UTC`, `UTC`).
    Timezone, "time zone", "an IANA name like Europe/Berlin",
    |s| all(s, |b| b.is_ascii_alphanumeric() || b"/_+-".contains(&b))
        && !s.starts_with('/') && !s.ends_with('/') && !s.contains("//")
);
ident!(
    /// A glibc locale (`en_US.UTF-8`, `C.UTF-8`).
    Locale, "locale", "a glibc locale like en_US.UTF-8",
    |s| all(s, |b| b.is_ascii_alphanumeric() || b"_.-@".contains(&b))
        && s.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
);
ident!(
    /// An XKB keyboard layout, model, variant or option (`us`, `pc105`, `ctrl:nocaps`).
    XkbName, "keyboard setting", "letters, digits and '_', '-', ':', ','",
    |s| all(s, |b| b.is_ascii_alphanumeric() || b"_-:,".contains(&b))
);
ident!(
    /// A snap channel (`5.21/stable`, `latest/edge`, `stable`).
    SnapChannel, "snap channel", "track/risk[/branch] like 5.21/stable",
    |s| {
        let parts: Vec<&str> = s.split('/').collect();
        let risks = ["stable", "candidate", "beta", "edge"];
        let word = |p: &&str| all(p, |b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        parts.len() <= 3 && parts.iter().all(word) && parts.iter().any(|p| risks.contains(p))
    }
);
ident!(
    /// A two-letter ISO 3166 country code for Wi-Fi regulation (`DE`).
    CountryCode, "country code", "two upper-case letters like DE",
    |s| s.len() == 2 && all(s, |b| b.is_ascii_uppercase())
);
ident!(
    /// An absolute path inside the target root file system.
    TargetPath, "target path",
    "an absolute path without '..', '//' or control characters, with names of at most 255 bytes and at most 4095 bytes in all",
    |s| s.starts_with('/') && s.len() > 1 && !s.ends_with('/')
        && !s.split('/').any(|c| c == ".." || c == "." || c.len() > NAME_MAX)
        && s.len() <= PATH_MAX
        && !s.contains("//") && !s.chars().any(char::is_control)
);
ident!(
    /// The GECOS (full name) field of an account: it lands in the
    /// colon-separated, line-based `/etc/passwd` (and in `useradd -c`), so
    /// a ':' or a newline would forge fields or whole accounts.
    Gecos, "gecos", "text without ':' or control characters (newline, tab, NUL), at most 255 bytes",
    |s| s.len() <= 255 && !s.contains(':') && !s.chars().any(char::is_control)
);
ident!(
    /// A block device path for MicroCloud storage (`/dev/sda`, `/dev/disk/by-id/…`).
    DiskPath, "disk path", "an absolute path under /dev/",
    |s| s.starts_with("/dev/") && s.len() > 5 && !s.split('/').any(|c| c == "..")
        && !s.chars().any(|c| c.is_control() || c.is_whitespace())
);
ident!(
    /// A login shell (`/bin/bash`).
    Shell, "shell", "an absolute path like /bin/bash",
    |s| s.starts_with('/') && !s.chars().any(|c| c.is_control() || c.is_whitespace() || c == ':')
);

/// An NTP server: a host name or an IPv4 address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NtpServer(String);

impl NtpServer {
    pub fn parse(s: &str) -> Result<Self, IdentError> {
        let ok = s.parse::<std::net::Ipv4Addr>().is_ok() || DomainName::parse(s).is_ok();
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(IdentError {
                what: "NTP server",
                text: s.to_owned(),
                rule: "a host name or an IPv4 address",
            })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NtpServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

crate::profile::newtype::string_serde!(NtpServer, NtpServer::parse);

/// Unix permission bits, written in profiles as a quoted octal string
/// (`"0644"`) so no YAML reader mistakes them for a decimal number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Mode(u32);

impl Mode {
    pub const fn new(bits: u32) -> Self {
        Self(bits & 0o7777)
    }

    pub fn parse(s: &str) -> Result<Self, IdentError> {
        let digits = s.strip_prefix("0o").unwrap_or(s);
        let ok =
            (3..=4).contains(&digits.len()) && digits.bytes().all(|b| (b'0'..=b'7').contains(&b));
        match u32::from_str_radix(digits, 8) {
            Ok(bits) if ok => Ok(Self(bits)),
            _ => Err(IdentError {
                what: "file mode",
                text: s.to_owned(),
                rule: "a quoted octal string like \"0644\"",
            }),
        }
    }

    pub fn bits(self) -> u32 {
        self.0
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04o}", self.0)
    }
}

crate::profile::newtype::string_serde!(Mode, Mode::parse);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_their_rules() {
        assert!(UserName::parse("alice").is_ok());
        assert!(UserName::parse("Alice").is_err());
        assert!(UserName::parse("1alice").is_err());
        assert!(PackageName::parse("g++").is_ok());
        assert!(PackageName::parse("yes").is_ok());
        assert!(PackageName::parse("-x").is_err());
        assert!(Timezone::parse("America/Argentina/Buenos_Aires").is_ok());
        assert!(Timezone::parse("../etc/passwd").is_err());
        assert!(SnapChannel::parse("5.21/stable").is_ok());
        assert!(SnapChannel::parse("2/stable/hotfix").is_ok());
        assert!(SnapChannel::parse("5.21").is_err());
        assert!(TargetPath::parse("/etc/motd").is_ok());
        for bad in ["etc/motd", "/etc/../shadow", "/etc/", "/"] {
            assert!(TargetPath::parse(bad).is_err(), "{bad}");
        }
        let long_name = format!("/etc/{}", "n".repeat(NAME_MAX + 1));
        assert!(TargetPath::parse(&long_name).is_err());
        assert!(TargetPath::parse(&long_name[..long_name.len() - 1]).is_ok());
        let exact = format!("{}d", "/d".repeat(2047));
        assert_eq!(exact.len(), PATH_MAX);
        assert!(TargetPath::parse(&exact).is_ok());
        assert!(TargetPath::parse(&format!("{exact}d")).is_err());
        assert!(Gecos::parse("Alice Example,Room 4,+49 30,").is_ok());
        assert!(Gecos::parse("").is_ok());
        for bad in ["x\nroot2::0:0:", "a:b", "a\tb", "a\0", "a\rb"] {
            assert!(Gecos::parse(bad).is_err(), "{bad:?}");
        }
        assert!(NtpServer::parse("1e3").is_ok());
        assert!(NtpServer::parse("ntp server").is_err());
    }

    #[test]
    fn long_refused_text_is_cut_in_messages() {
        let e = TargetPath::parse(&"/d".repeat(3000))
            .unwrap_err()
            .to_string();
        assert!(e.len() < 300, "{e}");
        assert!(
            e.contains("… (6000 bytes) is not a valid target path"),
            "{e}"
        );
    }

    #[test]
    fn modes_are_octal_strings() {
        assert_eq!(Mode::parse("0644").unwrap().bits(), 0o644);
        assert_eq!(Mode::parse("755").unwrap().to_string(), "0755");
        assert_eq!(Mode::parse("0o600").unwrap().bits(), 0o600);
        for bad in ["0888", "64", "07777a", ""] {
            assert!(Mode::parse(bad).is_err(), "{bad}");
        }
    }
}
