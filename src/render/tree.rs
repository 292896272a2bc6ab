//! Showing rendered specs to a person: as a directory tree (`render --out`)
//! with a `MANIFEST` of what each entry is and who owns it, or as text on
//! stdout. Owners cannot be set without root, so the tree carries modes
//! only and the manifest carries owners. Edits of files that exist only in
//! the image (account merges, the cmdline) are shown as what they add.

use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::io::path_error::{PathIoError, at};
use crate::render::file_spec::{FileKind, FileSpec};

#[derive(Debug, Error)]
pub enum TreeError {
    #[error("{} exists and is not empty; choose another --out or remove it", .0.display())]
    NotEmpty(PathBuf),
    #[error(transparent)]
    Io(#[from] PathIoError),
    #[error("refusing path {0:?}: it leaves the output directory")]
    Escapes(String),
    /// The account error is part of the message and deliberately not a
    /// `source` (`#[from]` would make it one), so `{:#}` prints it once.
    #[error("merging account entries: {0}")]
    Accounts(crate::render::accounts::AccountError),
}

impl From<crate::render::accounts::AccountError> for TreeError {
    fn from(e: crate::render::accounts::AccountError) -> TreeError {
        TreeError::Accounts(e)
    }
}

/// The bytes a spec shows as: file bytes, or for edits what they add.
pub fn shown_bytes(spec: &FileSpec) -> Result<Option<Vec<u8>>, TreeError> {
    Ok(match &spec.kind {
        FileKind::File { bytes } => Some(bytes.clone()),
        FileKind::AccountEntries { db, entries } => Some(entries.merge(*db, "")?.into_bytes()),
        _ => None,
    })
}

/// The header `render` prints above each file:
/// `root /etc/hostname file 0644 0:0 sha256=…`.
pub fn header_line(spec: &FileSpec) -> Result<String, TreeError> {
    let mut line = format!(
        "{} {} {} {:04o} {}:{}",
        spec.target,
        spec.path,
        spec.kind.name(),
        spec.mode,
        spec.uid,
        spec.gid
    );
    match &spec.kind {
        FileKind::Symlink { target } => {
            let _ = write!(line, " -> {target}");
        }
        FileKind::CmdlineEdit { ops } => {
            for op in ops {
                let _ = write!(line, " [{op}]");
            }
        }
        // One line: the file is tens of MiB and lives in the cache.
        FileKind::Cached { file } => match &file.found {
            Some(b) => {
                let _ = write!(
                    line,
                    " [{}, {} bytes] sha256={}",
                    file.what, b.len, b.sha256
                );
            }
            None => {
                let _ = write!(
                    line,
                    " [{}: not in the cache yet; `homelab-image pull` fetches it]",
                    file.what
                );
            }
        },
        _ => {}
    }
    if let Some(bytes) = shown_bytes(spec)? {
        let _ = write!(
            line,
            " sha256={}",
            crate::digest::hex(&Sha256::digest(&bytes))
        );
    }
    Ok(line)
}

/// `target` joined with a spec path that must stay inside it.
fn inside(base: &Path, spec_path: &str) -> Result<PathBuf, TreeError> {
    let rel = Path::new(spec_path.trim_start_matches('/'));
    if rel.components().any(|c| !matches!(c, Component::Normal(_))) || rel.as_os_str().is_empty() {
        return Err(TreeError::Escapes(spec_path.to_owned()));
    }
    Ok(base.join(rel))
}

/// Writes `specs` under `out/boot` and `out/root`, plus `out/manifest.json`
/// (the build manifest's type: owners and modes, which a non-root user
/// cannot set on the tree's files).
/// The tree holds the real bytes, secrets included, so `out` is made 0700
/// (nobody else can enter it) and every file whose `secret` mark is set is
/// 0600 (so a copy taken out of the tree with its mode stays private);
/// other entries keep the mode the image gives them.
pub fn write_tree(
    out: &Path,
    node: &str,
    specs: &[FileSpec],
    secret: &[bool],
) -> Result<(), TreeError> {
    if out.exists()
        && fs::read_dir(out)
            .map_err(at("reading", out))?
            .next()
            .is_some()
    {
        return Err(TreeError::NotEmpty(out.to_owned()));
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(out)
        .map_err(at("creating", out))?;
    // An existing empty directory keeps its mode through create().
    fs::set_permissions(out, fs::Permissions::from_mode(0o700))
        .map_err(at("setting mode of", out))?;
    for (i, spec) in specs.iter().enumerate() {
        let path = inside(&out.join(spec.target.to_string()), &spec.path)?;
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(at("creating", parent))?;
        }
        match &spec.kind {
            FileKind::Dir => {
                fs::create_dir_all(&path).map_err(at("creating", &path))?;
                fs::set_permissions(&path, fs::Permissions::from_mode(spec.mode))
                    .map_err(at("setting mode of", &path))?;
            }
            FileKind::Symlink { target } => {
                std::os::unix::fs::symlink(target, &path).map_err(at("creating symlink", &path))?;
            }
            // Cached files are listed in manifest.json only: a tree for a
            // person to read does not need 70 MiB of binary.
            FileKind::Absent | FileKind::CmdlineEdit { .. } | FileKind::Cached { .. } => {}
            FileKind::File { .. } | FileKind::AccountEntries { .. } => {
                let bytes = shown_bytes(spec)?.unwrap_or_default();
                let mode = if secret.get(i).copied().unwrap_or(true) {
                    0o600
                } else {
                    spec.mode
                };
                // Created owner-only and given its mode once the bytes are
                // in, so a secret is never readable by others on the way.
                let mut f = fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path)
                    .map_err(at("creating", &path))?;
                f.write_all(&bytes).map_err(at("writing", &path))?;
                fs::set_permissions(&path, fs::Permissions::from_mode(mode))
                    .map_err(at("setting mode of", &path))?;
            }
        }
    }
    let path = out.join("manifest.json");
    let manifest = crate::build::manifest::Manifest::of(node, specs);
    fs::write(&path, manifest.to_json()).map_err(at("writing", &path))?;
    Ok(())
}

/// Every spec as a header line and its text (binary files summarised),
/// secrets included.
pub fn to_text(specs: &[FileSpec]) -> Result<String, TreeError> {
    let bodies = specs
        .iter()
        .map(shown_bytes)
        .collect::<Result<Vec<_>, _>>()?;
    to_text_with(specs, &bodies)
}

/// Every spec as a header line (of its real bytes) and `bodies[i]` as its
/// text: what `render` prints, with `redact::redact`'s bodies when secrets
/// are hidden.
pub fn to_text_with(specs: &[FileSpec], bodies: &[Option<Vec<u8>>]) -> Result<String, TreeError> {
    let mut out = String::new();
    for (spec, body) in specs.iter().zip(bodies) {
        let _ = writeln!(out, "==> {} <==", header_line(spec)?);
        if let Some(bytes) = body {
            match std::str::from_utf8(bytes) {
                Ok(text) => {
                    out.push_str(text);
                    if !text.ends_with('\n') {
                        out.push('\n');
                    }
                }
                Err(_) => {
                    let _ = writeln!(out, "(binary, {} bytes)", bytes.len());
                }
            }
        }
        out.push('\n');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::TreeError;
    use crate::render::accounts::AccountError;

    #[test]
    fn an_account_error_prints_once_under_alternate_format() {
        let e = TreeError::from(AccountError::Malformed {
            db: "/etc/passwd",
            line: 3,
        });
        let shown = format!("{:#}", anyhow::Error::new(e).context("render --out"));
        assert_eq!(
            shown.matches("line 3 has too few fields").count(),
            1,
            "{shown}"
        );
    }
}
