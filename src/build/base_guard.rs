//! What a build asks of its base images: that none is a file the build
//! itself replaces (a profile whose `image.path` is `out/pi1.img` would
//! otherwise build pi1 over its own base, and every later build and node
//! from the result), and that none changes size while it is read.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

use super::output::partial_name;
use super::plan::BuildPlan;

/// Every file a build of `plan` writes or replaces: per node the image,
/// its `.bmap`, `.sha256` and `.xz`, the hidden partial names they are
/// written under, and `known_hosts`.
fn outputs(plan: &BuildPlan) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for n in &plan.nodes {
        for suffix in ["", ".bmap", ".sha256", ".xz"] {
            let fin = PathBuf::from(format!("{}{suffix}", n.out.display()));
            out.push(partial_name(&fin));
            out.push(fin);
        }
    }
    let hosts = plan.out_dir.join("known_hosts");
    out.push(partial_name(&hosts));
    out.push(hosts);
    out
}

/// Refuses, before anything is written, a plan in which a node's base
/// (its `base_path`) is, or is a hard link to, a file the build
/// writes: the same device and inode. A base that is a symlink is judged
/// by the file it points at; an output that is a symlink by the link
/// itself (the rename replaces the link, not its target).
pub fn refuse_base_as_output(plan: &BuildPlan) -> Result<()> {
    let outputs: Vec<(PathBuf, (u64, u64))> = outputs(plan)
        .into_iter()
        .filter_map(|p| {
            let m = std::fs::symlink_metadata(&p).ok()?;
            Some((p, (m.dev(), m.ino())))
        })
        .collect();
    for node in &plan.nodes {
        let Some(base) = &node.base_path else {
            continue;
        };
        // A base that cannot be read fails later, with its own error.
        let Ok(m) = std::fs::metadata(base) else {
            continue;
        };
        if let Some((out, _)) = outputs.iter().find(|(_, id)| *id == (m.dev(), m.ino())) {
            let how = if out == base {
                "is"
            } else {
                "is the same file (a hard link or symlink) as"
            };
            bail!(
                "node {}: its base image {} {how} {}, which this build writes; \
                 the build would replace its own base. Move or copy the base out of \
                 {}, or build into another --out",
                node.name,
                base.display(),
                out.display(),
                plan.out_dir.display()
            );
        }
    }
    Ok(())
}

/// The size of `base` now, if it can be read.
pub fn size_of(base: &Path) -> Option<u64> {
    std::fs::metadata(base).ok().map(|m| m.len())
}

/// `err` from building a node from `base`, which was `before` bytes when
/// the build started: when the base's size has changed since, that is
/// the cause (a short read says only "failed to fill whole buffer"), so
/// the error says so instead.
pub fn explain_changed_base(err: anyhow::Error, base: &Path, before: Option<u64>) -> anyhow::Error {
    match (before, size_of(base)) {
        (Some(was), Some(now)) if was != now => anyhow::anyhow!(
            "the base image {} changed size while it was being read ({was} bytes when the \
             build started, {now} now); is something else writing it? Build again once \
             it is complete",
            base.display()
        ),
        (Some(was), None) => anyhow::anyhow!(
            "the base image {} ({was} bytes when the build started) disappeared while it \
             was being read",
            base.display()
        ),
        _ => err,
    }
}

/// The size and modification time of an open base, to tell afterwards
/// whether something wrote it while the build read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot {
    len: u64,
    mtime: (i64, i64),
}

pub fn snapshot(f: &std::fs::File) -> Option<Snapshot> {
    let m = f.metadata().ok()?;
    Some(Snapshot {
        len: m.len(),
        mtime: (m.mtime(), m.mtime_nsec()),
    })
}

/// Refuses a node image read from a base that changed while it was read
/// (`before`: when it was opened). A base cut short before its data was
/// scanned would otherwise read as holes and give a wrong image with no
/// error at all.
pub fn refuse_changed(f: &std::fs::File, base: &Path, before: Option<Snapshot>) -> Result<()> {
    let (Some(was), Some(now)) = (before, snapshot(f)) else {
        return Ok(());
    };
    if was.len != now.len {
        bail!(
            "the base image {} changed size while it was being read ({} bytes when the \
             build started, {} now); is something else writing it? Build again once \
             it is complete",
            base.display(),
            was.len,
            now.len
        );
    }
    if was.mtime != now.mtime {
        bail!(
            "the base image {} was modified while it was being read; is something else \
             writing it? Build again once it is complete",
            base.display()
        );
    }
    Ok(())
}
