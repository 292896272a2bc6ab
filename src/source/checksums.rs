//! Publishers' checksum files: Ubuntu's `SHA256SUMS` (`<hex> *<name>`),
//! Armbian's `.sha` (`<hex> <name>`) and the two-space text form that
//! `sha256sum` writes (`<hex>  <name>`). Parsing only; fetching and
//! signature checks live elsewhere.

use thiserror::Error;

use crate::digest::Sha256;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ChecksumsError {
    #[error("line {line}: {reason}")]
    Malformed { line: usize, reason: &'static str },
    #[error("no checksum lines")]
    Empty,
}

/// One line of a checksum file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChecksumLine {
    pub sha256: Sha256,
    /// The file name as written, without a binary-mode `*` and without any
    /// directory part (Armbian's tooling has been seen to keep one).
    pub name: String,
}

/// Parses every line; blank lines and `#` comments are skipped, anything
/// else that is not `<64 hex><space(s) or " *"><name>` is an error.
pub fn parse(text: &str) -> Result<Vec<ChecksumLine>, ChecksumsError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim_end_matches('\r').trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let malformed = |reason| ChecksumsError::Malformed {
            line: i + 1,
            reason,
        };
        let (hex, rest) = line
            .split_once([' ', '\t'])
            .ok_or_else(|| malformed("expected `<sha256> <file name>`"))?;
        let sha256: Sha256 = hex
            .parse()
            .map_err(|_| malformed("the checksum is not 64 hexadecimal digits"))?;
        // `<hex> *name` (binary), `<hex>  name` (text), `<hex> name` (Armbian).
        let rest = rest.trim_start_matches([' ', '\t']);
        let rest = rest.strip_prefix('*').unwrap_or(rest);
        let name = rest.rsplit('/').next().unwrap_or(rest);
        if name.is_empty() {
            return Err(malformed("the file name is missing"));
        }
        out.push(ChecksumLine {
            sha256,
            name: name.to_owned(),
        });
    }
    if out.is_empty() {
        return Err(ChecksumsError::Empty);
    }
    Ok(out)
}

/// The checksum listed for `name`, if exactly one line names it (two lines
/// with different checksums for one file would be ambiguous: `None`).
pub fn find<'a>(lines: &'a [ChecksumLine], name: &str) -> Option<&'a ChecksumLine> {
    let mut hits = lines.iter().filter(|l| l.name == name);
    let first = hits.next()?;
    hits.all(|l| l.sha256 == first.sha256).then_some(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "3fe6fa9a3ad4bd0a1a1dc4d5bb3a7c6e36bc6a7d4ba8a0a8f4e7fdbc5d2cf504";
    const B: &str = "0000000000000000000000000000000000000000000000000000000000000001";

    #[test]
    fn ubuntu_armbian_and_text_forms() {
        let text = format!(
            "{A} *ubuntu-24.04.3-preinstalled-server-arm64+raspi.img.xz\n\
             \n# comment\n{B}  two-space.img\r\n{A} output/images/x/Armbian_1.img.xz\n"
        );
        let lines = parse(&text).unwrap();
        assert_eq!(lines.len(), 3);
        assert_eq!(
            lines[0].name,
            "ubuntu-24.04.3-preinstalled-server-arm64+raspi.img.xz"
        );
        assert_eq!(lines[0].sha256.to_string(), A);
        assert_eq!(lines[1].name, "two-space.img");
        assert_eq!(lines[2].name, "Armbian_1.img.xz");
        assert_eq!(find(&lines, "two-space.img").unwrap().sha256.to_string(), B);
        assert!(find(&lines, "missing").is_none());
    }

    #[test]
    fn malformed_lines_name_their_number() {
        assert_eq!(
            parse(&format!("{A} a\nnot-a-hash b\n")),
            Err(ChecksumsError::Malformed {
                line: 2,
                reason: "the checksum is not 64 hexadecimal digits"
            })
        );
        assert!(matches!(
            parse(&format!("{A}\n")),
            Err(ChecksumsError::Malformed { line: 1, .. })
        ));
        assert_eq!(parse("\n\n"), Err(ChecksumsError::Empty));
        assert!(parse("<html>404</html>").is_err());
    }

    #[test]
    fn conflicting_lines_are_ambiguous() {
        let lines = parse(&format!("{A} f\n{B} f\n")).unwrap();
        assert!(find(&lines, "f").is_none());
        let lines = parse(&format!("{A} f\n{A} *f\n")).unwrap();
        assert!(find(&lines, "f").is_some());
    }
}
