//! The build serials of Ubuntu's cloud images: a series directory on
//! cloud-images.ubuntu.com (`releases/noble/`) is an HTML index with one
//! `release-YYYYMMDD[.N]/` subdirectory per published build (plus a
//! `release/` link and other entries). This module reads such an index and
//! picks the newest serial; fetching and signature checks live in `locate`.

use std::cmp::Ordering;
use std::fmt;

/// A cloud image build serial: `20250201` or `20250201.1` (a respin of the
/// same day). Ordered by date, then respin number, numerically.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Serial {
    /// `YYYYMMDD` as a number.
    pub date: u32,
    /// The `.N` suffix, `None` for none (which sorts before `.0`).
    pub respin: Option<u32>,
}

impl Ord for Serial {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.date, self.respin).cmp(&(other.date, other.respin))
    }
}

impl PartialOrd for Serial {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.date)?;
        match self.respin {
            Some(n) => write!(f, ".{n}"),
            None => Ok(()),
        }
    }
}

impl Serial {
    /// The directory name it is published under: `release-20250201.1`.
    pub fn dir_name(&self) -> String {
        format!("release-{self}")
    }

    /// `release-YYYYMMDD` or `release-YYYYMMDD.N` (exactly eight date
    /// digits, one to nine respin digits); anything else is `None`.
    pub fn parse_dir_name(name: &str) -> Option<Serial> {
        let rest = name.strip_prefix("release-")?;
        let (date, respin) = match rest.split_once('.') {
            Some((d, n)) => (d, Some(n)),
            None => (rest, None),
        };
        let digits = |s: &str, max: usize| {
            !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_digit())
        };
        if date.len() != 8 || !digits(date, 8) {
            return None;
        }
        let respin = match respin {
            Some(n) if digits(n, 9) => Some(n.parse().ok()?),
            Some(_) => return None,
            None => None,
        };
        Some(Serial {
            date: date.parse().ok()?,
            respin,
        })
    }
}

/// Every `release-<serial>/` directory an index page links to, in page
/// order. Only `href` values ending in `/` count (directories); their last
/// path segment is the name, so relative and absolute links both work and
/// nothing outside the series directory is ever followed.
pub fn serials(html: &str) -> Vec<Serial> {
    let mut out = Vec::new();
    let lower = html.to_ascii_lowercase();
    let mut from = 0;
    while let Some(at) = lower[from..].find("href=") {
        let start = from + at + "href=".len();
        from = start;
        let Some(quote) = html[start..]
            .chars()
            .next()
            .filter(|c| *c == '"' || *c == '\'')
        else {
            continue;
        };
        let value_start = start + 1;
        let Some(len) = html[value_start..].find(quote) else {
            break;
        };
        let value = &html[value_start..value_start + len];
        from = value_start + len;
        let value = value.split(['?', '#']).next().unwrap_or(value);
        let Some(dir) = value.strip_suffix('/') else {
            continue;
        };
        let name = dir.rsplit('/').next().unwrap_or(dir);
        if let Some(serial) = Serial::parse_dir_name(name) {
            out.push(serial);
        }
    }
    out
}

/// The newest serial an index page links to.
pub fn newest(html: &str) -> Option<Serial> {
    serials(html).into_iter().max()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(date: u32, respin: Option<u32>) -> Serial {
        Serial { date, respin }
    }

    #[test]
    fn dir_names_parse_and_print_back() {
        for name in [
            "release-20250110",
            "release-20250201.1",
            "release-20250201.12",
        ] {
            assert_eq!(Serial::parse_dir_name(name).unwrap().dir_name(), name);
        }
        for bad in [
            "release",
            "release-",
            "release-2025011",
            "release-202501100",
            "release-2025011x",
            "release-20250110.",
            "release-20250110.a",
            "release-20250110.1.2",
            "release-20250110.1234567890",
            "current",
            "Release-20250110",
        ] {
            assert_eq!(Serial::parse_dir_name(bad), None, "{bad}");
        }
    }

    #[test]
    fn serials_order_numerically() {
        assert!(s(20250201, Some(1)) > s(20250201, None));
        assert!(s(20250201, Some(10)) > s(20250201, Some(9)));
        assert!(s(20250201, None) > s(20250110, Some(99)));
    }

    #[test]
    fn an_apache_index_yields_its_release_directories() {
        // The shape of cloud-images.ubuntu.com's listings (Apache
        // mod_autoindex): icons, a parent link, sort links, the `release/`
        // link and files besides the serial directories.
        let html = r#"<!DOCTYPE HTML PUBLIC "-//W3C//DTD HTML 3.2 Final//EN">
<html><head><title>Index of /releases/noble</title></head><body>
<h1>Index of /releases/noble</h1>
<table><tr><th><a href="?C=N;O=D">Name</a></th></tr>
<tr><td><img src="/icons/back.gif"></td><td><a href="/releases/">Parent Directory</a></td></tr>
<tr><td><a href="release-20250201/">release-20250201/</a></td></tr>
<tr><td><a href="release-20250201.1/">release-20250201.1/</a></td></tr>
<tr><td><A HREF='/releases/noble/release-20250110/'>release-20250110/</A></td></tr>
<tr><td><a href="release/">release/</a></td></tr>
<tr><td><a href="release-20991231">not a directory</a></td></tr>
<tr><td><a href="release-20990101.x/">bad serial</a></td></tr>
<tr><td><a href=release-20990102/>unquoted</a></td></tr>
</table></body></html>"#;
        assert_eq!(
            serials(html),
            [s(20250201, None), s(20250201, Some(1)), s(20250110, None)]
        );
        assert_eq!(newest(html).unwrap().to_string(), "20250201.1");
        assert_eq!(newest("<html>nothing here</html>"), None);
        assert_eq!(newest("<a href=\"release-2025"), None);
    }
}
