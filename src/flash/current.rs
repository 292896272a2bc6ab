//! Whether a node's built image (`OUT/NODE.img`) is still what `build`
//! makes of the profile now. `flash --node NAME` writes that file when it
//! exists; after an edit of the profile (an address, a user, a key) or a
//! lost state directory it would put yesterday's node on the card. The
//! node is rendered again, in memory and without saving anything, and the
//! result compared with the manifest the build wrote into the image.

use std::path::Path;

use anyhow::{Context, Result};

use crate::build::manifest::{FileRow, MANIFEST_PATH, Manifest};
use crate::build::pipeline::{self, Bases, Request};
use crate::image::Image;
use crate::profile::resolved::Cluster;
use crate::progress::Progress;
use crate::render::FileKind;

/// The verdict on one built image.
#[derive(Debug, PartialEq, Eq)]
pub enum Currency {
    /// Every injected file is what a build would inject now.
    Current,
    /// These injected files (`target:path`) differ or are missing/extra.
    Stale(Vec<String>),
    /// Cannot tell, and why (the base image is not at hand, so the node
    /// cannot be rendered as a build would; or the image has no manifest).
    Unknown(String),
}

/// Judges `image`, built for node `name` of `cluster` into `out_dir`.
/// Bases are looked for in `cache_dir` and at their profile paths only:
/// nothing is downloaded and nothing is written.
pub fn judge(
    cluster: &Cluster,
    name: &str,
    image: &Path,
    out_dir: &Path,
    cache_dir: Option<&Path>,
) -> Result<Currency> {
    let nodes = [name.to_owned()];
    let request = Request {
        cluster,
        nodes: &nodes,
        out_dir,
        bases: Bases::AtHand(cache_dir),
        save_state: false,
    };
    // Notices were given when the profile was loaded; not twice.
    let prepared = pipeline::prepare(&request, &Progress::quiet(), &mut |_| {})
        .with_context(|| format!("rendering node {name} to compare with {}", image.display()))?;
    let Some(plan) = prepared.plan.nodes.first() else {
        return Ok(Currency::Unknown(format!("no node {name} in the plan")));
    };
    if plan.base_path.is_none() {
        return Ok(Currency::Unknown(
            "its base image is not at hand (pull it to let flash check)".to_owned(),
        ));
    }
    // A file the build copies from the download cache (the k3s binary) is
    // recorded by its checksum, which only the cache knows.
    if let Some(what) = plan.files.iter().find_map(|f| match &f.kind {
        FileKind::Cached { file } if file.found.is_none() => Some(file.what.clone()),
        _ => None,
    }) {
        return Ok(Currency::Unknown(format!(
            "the {what} is not in the cache (pull it to let flash check)"
        )));
    }
    let Some(want) = plan.files.iter().find_map(|f| match &f.kind {
        FileKind::File { bytes } if f.path == MANIFEST_PATH => Manifest::from_json(bytes).ok(),
        _ => None,
    }) else {
        return Ok(Currency::Unknown("the plan has no manifest".to_owned()));
    };
    let Some(have) = manifest_in(image)? else {
        return Ok(Currency::Unknown(format!(
            "it holds no {MANIFEST_PATH} (not built by homelab-image?)"
        )));
    };
    let differ = differences(&want.files, &have.files);
    Ok(if differ.is_empty() {
        Currency::Current
    } else {
        Currency::Stale(differ)
    })
}

/// The build manifest inside `path`, if it has one.
fn manifest_in(path: &Path) -> Result<Option<Manifest>> {
    let image = Image::open(path)?;
    let parts = crate::build::patch::parts(&image)?;
    let (_, root) = image.filesystem(&parts.root.to_string())?;
    Manifest::read_from(&root, &path.display().to_string())
}

/// `target:path` of every row that is in one list and not the other.
fn differences(want: &[FileRow], have: &[FileRow]) -> Vec<String> {
    let key = |r: &FileRow| format!("{}:{}", r.target, r.path);
    let mut out: Vec<String> = want
        .iter()
        .filter(|r| !have.contains(r))
        .chain(have.iter().filter(|r| !want.contains(r)))
        .map(key)
        .collect();
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(path: &str, sha: &str) -> FileRow {
        FileRow {
            target: "root".into(),
            path: path.into(),
            kind: "file".into(),
            mode: "0644".into(),
            owner: "0:0".into(),
            size: Some(1),
            sha256: Some(sha.into()),
        }
    }

    #[test]
    fn changed_missing_and_extra_rows_are_named_once() {
        let want = [row("/a", "1"), row("/b", "2"), row("/c", "3")];
        let have = [row("/a", "1"), row("/b", "9"), row("/d", "4")];
        assert_eq!(differences(&want, &have), ["root:/b", "root:/c", "root:/d"]);
        assert!(differences(&want, &want).is_empty());
    }
}
