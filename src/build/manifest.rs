//! The manifest: what a build puts into a node's image, one row per file.
//! One type, written by the build into the image
//! (`/var/lib/homelab-image/manifest.json`), listed by `build --dry-run`,
//! read back by `inspect` (and by `flash`'s verification), and written
//! beside a `render --out` tree (`DIR/manifest.json`).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::digest::hex;
use crate::render::{FileKind, FileSpec, Target};

/// Where the build records what it injected.
pub const MANIFEST_PATH: &str = "/var/lib/homelab-image/manifest.json";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// `homelab-image VERSION`.
    pub tool: String,
    pub node: String,
    pub files: Vec<FileRow>,
}

/// One injected entry. `mode` and `owner` are `-` on the FAT boot
/// partition, which has neither; `size` and `sha256` are given for files
/// whose whole content the build decides (not for edits of files the base
/// already holds, such as account databases and the kernel command line).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRow {
    pub target: String,
    pub path: String,
    pub kind: String,
    #[serde(default)]
    pub mode: String,
    #[serde(default)]
    pub owner: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

impl FileRow {
    pub fn of(spec: &FileSpec) -> Self {
        let (size, sha256) = match &spec.kind {
            FileKind::File { bytes } => (Some(bytes.len()), Some(hex(&Sha256::digest(bytes)))),
            // The checksum and length the cache verified; a file not at
            // hand yet has none (the build refuses to write it).
            FileKind::Cached { file } => match &file.found {
                Some(b) => (usize::try_from(b.len).ok(), Some(b.sha256.to_string())),
                None => (None, None),
            },
            _ => (None, None),
        };
        let boot = spec.target == Target::Boot;
        FileRow {
            target: spec.target.to_string(),
            path: spec.path.clone(),
            kind: spec.kind.name().to_owned(),
            mode: if boot {
                "-".into()
            } else {
                format!("{:04o}", spec.mode)
            },
            owner: if boot {
                "-".into()
            } else {
                format!("{}:{}", spec.uid, spec.gid)
            },
            size,
            sha256,
        }
    }
}

pub fn rows(files: &[FileSpec]) -> Vec<FileRow> {
    files.iter().map(FileRow::of).collect()
}

impl Manifest {
    /// The manifest recording `files` for `node` (no timestamps, so builds
    /// stay reproducible).
    pub fn of(node: &str, files: &[FileSpec]) -> Self {
        Manifest {
            tool: format!("homelab-image {}", env!("CARGO_PKG_VERSION")),
            node: node.to_owned(),
            files: rows(files),
        }
    }

    /// Pretty JSON with a final newline.
    pub fn to_json(&self) -> String {
        // Serialising plain strings and numbers cannot fail.
        let mut json = serde_json::to_string_pretty(self).unwrap_or_default();
        json.push('\n');
        json
    }

    pub fn from_json(bytes: &[u8]) -> serde_json::Result<Self> {
        serde_json::from_slice(bytes)
    }

    /// The manifest in `root`, an image's root filesystem, if it holds one;
    /// `shown` names the image in errors. Read bounded, as every file we
    /// parse out of an image.
    pub fn read_from(root: &crate::fs::Filesystem, shown: &str) -> anyhow::Result<Option<Self>> {
        use anyhow::Context as _;
        let Some(text) = root
            .read_bounded_if_exists(MANIFEST_PATH, crate::fs::limits::PARSED_FILE)
            .with_context(|| format!("{shown}: reading {MANIFEST_PATH}"))?
        else {
            return Ok(None);
        };
        Self::from_json(&text)
            .map(Some)
            .with_context(|| format!("{shown}: {MANIFEST_PATH} is not a build manifest"))
    }

    /// The file spec that puts this manifest into the image.
    pub fn spec(&self) -> FileSpec {
        FileSpec::root_file(MANIFEST_PATH, 0o644, self.to_json())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manifest_reads_back_as_written() {
        let specs = vec![
            FileSpec::root_file("/etc/hostname", 0o644, "pi1\n".to_owned()),
            FileSpec::boot_file("user-data", b"#cloud-config\n".to_vec()),
        ];
        let m = Manifest::of("pi1", &specs);
        let back = Manifest::from_json(m.to_json().as_bytes()).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.files[0].mode, "0644");
        assert_eq!(back.files[1].owner, "-");
        assert_eq!(back.files[0].size, Some(4));
    }
}
