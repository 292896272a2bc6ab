//! YAML output for files that PyYAML (cloud-init, MicroCloud's yaml.v3,
//! netplan's libyaml) reads back. serde-saphyr quotes every scalar that a
//! YAML 1.1 reader would turn into a bool, number, null or date (`on`,
//! `no`, `0755`, `12:30`, `1e3`, `~`), which is why it is used here; long
//! single-line strings (SSH keys) are never folded, multi-line strings are
//! literal blocks.

use serde::Serialize;
use thiserror::Error;

#[derive(Debug, Error)]
#[error("serialising {what} as YAML: {message}")]
pub struct YamlError {
    what: &'static str,
    message: String,
}

/// Serialises `value`; `what` names the file in errors.
pub fn to_yaml<T: Serialize>(what: &'static str, value: &T) -> Result<String, YamlError> {
    let mut options = serde_saphyr::SerializerOptions::default();
    // Folding a long single line (an SSH key) is legal YAML but makes the
    // file harder to read and diff; keep such lines whole.
    options.folded_wrap_chars = usize::MAX;
    serde_saphyr::to_string_with_options(value, options).map_err(|e| YamlError {
        what,
        message: e.to_string(),
    })
}

/// Standard base64 with padding (RFC 4648), for binary `write_files`.
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    // chunks() never yields an empty slice, so chunk[0] exists.
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        // Each index is masked to 6 bits, so it is < 64.
        let sym =
            |shift: u32| char::from(ALPHABET[usize::try_from((n >> shift) & 63).unwrap_or(0)]);
        out.push(sym(18));
        out.push(sym(12));
        out.push(if chunk.len() > 1 { sym(6) } else { '=' });
        out.push(if chunk.len() > 2 { sym(0) } else { '=' });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(i.as_bytes()), o);
        }
    }

    #[test]
    fn yaml_1_1_look_alikes_are_quoted() {
        let out = to_yaml("test", &vec!["on", "no", "0755", "12:30", "1e3", "~"]).unwrap();
        assert_eq!(
            out,
            "- \"on\"\n- \"no\"\n- \"0755\"\n- \"12:30\"\n- \"1e3\"\n- \"~\"\n"
        );
    }
}
