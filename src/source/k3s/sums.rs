//! A k3s release's `sha256sum-<arch>.txt`: the one checksum the download
//! of an asset is held to. Upstream writes it with `sha256sum`
//! (`<64 hex>  <file name>`, one line per asset of the architecture: the
//! binary and the air-gap tarballs); the line syntax is the shared
//! `checksums` parser's. What this adds: the file must be small text (a
//! page from a captive portal or an error page is not one), and the asset
//! must be listed exactly once, or with one checksum.

use thiserror::Error;

use crate::digest::Sha256;
use crate::source::checksums::{self, ChecksumsError};

/// The most a checksum file may hold. Upstream's are under 1 KiB (four or
/// five lines); anything near this is not one, and is not read further.
pub const LIMIT: u64 = 64 << 10;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SumsError {
    #[error("is not a checksum file: it is not UTF-8 text")]
    NotText,
    #[error("is not a checksum file: it is larger than {0} bytes")]
    TooLarge(u64),
    #[error("is not a checksum file: {0}")]
    Malformed(ChecksumsError),
    #[error("lists no {0}")]
    NotListed(String),
    #[error("lists {0} more than once, with different checksums")]
    Conflicting(String),
}

/// The SHA-256 that checksum file `body` gives for `file`.
pub fn expected_sha256(body: &[u8], file: &str) -> Result<Sha256, SumsError> {
    let text = std::str::from_utf8(body).map_err(|_| SumsError::NotText)?;
    let lines = checksums::parse(text).map_err(SumsError::Malformed)?;
    let mut listed = lines.iter().filter(|l| l.name == file);
    let Some(first) = listed.next() else {
        return Err(SumsError::NotListed(file.to_owned()));
    };
    if listed.any(|l| l.sha256 != first.sha256) {
        return Err(SumsError::Conflicting(file.to_owned()));
    }
    Ok(first.sha256)
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "6b2f2a4a1f0e6d2a8f7d1c7c2c5b0b1b9a0d2e6e2a7a9e1d1f3c5b7a9e0c2d4f";
    const B: &str = "1c0ffee1c0ffee1c0ffee1c0ffee1c0ffee1c0ffee1c0ffee1c0ffee1c0ffee1";
    const C: &str = "00000000000000000000000000000000000000000000000000000000000000aa";

    /// The shape of upstream's `sha256sum-arm64.txt`.
    fn upstream() -> String {
        format!(
            "{C}  k3s-airgap-images-arm64.tar\n{B}  k3s-airgap-images-arm64.tar.zst\n\
             {A}  k3s-arm64\n"
        )
    }

    #[test]
    fn upstreams_file_gives_each_assets_checksum() {
        let text = upstream();
        assert_eq!(
            expected_sha256(text.as_bytes(), "k3s-arm64").unwrap(),
            A.parse().unwrap()
        );
        assert_eq!(
            expected_sha256(text.as_bytes(), "k3s-airgap-images-arm64.tar.zst").unwrap(),
            B.parse().unwrap()
        );
    }

    #[test]
    fn an_asset_without_a_line_is_not_listed() {
        // A name that only starts like the asset's is another file.
        let text = upstream();
        assert_eq!(
            expected_sha256(text.as_bytes(), "k3s"),
            Err(SumsError::NotListed("k3s".into()))
        );
        assert_eq!(
            expected_sha256(text.as_bytes(), "k3s-airgap-images-arm64.tar.gz"),
            Err(SumsError::NotListed(
                "k3s-airgap-images-arm64.tar.gz".into()
            ))
        );
    }

    #[test]
    fn an_error_page_is_not_a_checksum_file() {
        let page = b"<!DOCTYPE html>\n<html><body>Sign in to the Wi-Fi</body></html>\n";
        assert_eq!(
            expected_sha256(page, "k3s-arm64"),
            Err(SumsError::Malformed(ChecksumsError::Malformed {
                line: 1,
                reason: "the checksum is not 64 hexadecimal digits"
            }))
        );
        assert_eq!(
            expected_sha256(b"", "k3s-arm64"),
            Err(SumsError::Malformed(ChecksumsError::Empty))
        );
        assert_eq!(
            expected_sha256(b"\x7fELF\x02\x01\x01\x00\xff\xfe", "k3s-arm64"),
            Err(SumsError::NotText)
        );
    }

    #[test]
    fn one_bad_line_spoils_the_file_and_names_its_number() {
        let text = format!("{A}  k3s-arm64\n{B}\n");
        assert_eq!(
            expected_sha256(text.as_bytes(), "k3s-arm64"),
            Err(SumsError::Malformed(ChecksumsError::Malformed {
                line: 2,
                reason: "expected `<sha256> <file name>`"
            }))
        );
    }

    #[test]
    fn two_checksums_for_one_asset_are_refused() {
        let text = format!("{A}  k3s-arm64\n{B}  k3s-arm64\n");
        assert_eq!(
            expected_sha256(text.as_bytes(), "k3s-arm64"),
            Err(SumsError::Conflicting("k3s-arm64".into()))
        );
        let same = format!("{A}  k3s-arm64\n{A} *k3s-arm64\n");
        assert!(expected_sha256(same.as_bytes(), "k3s-arm64").is_ok());
    }

    #[test]
    fn the_messages_read_after_the_url() {
        assert_eq!(
            SumsError::NotListed("k3s-arm64".into()).to_string(),
            "lists no k3s-arm64"
        );
        assert_eq!(
            SumsError::Malformed(ChecksumsError::Empty).to_string(),
            "is not a checksum file: no checksum lines"
        );
    }
}
