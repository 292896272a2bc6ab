//! Puts a node's rendered files into its image copy: the FAT boot partition
//! (seed files, `cmdline.txt` token edits) through fatfs, the ext4 root
//! through our writer in one batch. Returns what each path must hold
//! afterwards, for the self-check in `verify`.

use std::path::Path;

use anyhow::{Context, Result, bail};
use sha2::Digest as _;

use crate::fs::ext4::{Content, Meta, Op};
use crate::fs::{EntryKind, Filesystem, FsError};
use crate::image::Image;
use crate::render::cmdline::edit_cmdline;
use crate::render::quirks::AB_CMDLINE;
use crate::render::{FileKind, FileSpec, Target};

/// What a path must hold once the build is done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// Bytes, and for ext4 files we created the mode and owner.
    File {
        bytes: Vec<u8>,
        meta: Option<(u16, u32, u32)>,
    },
    Dir {
        mode: u16,
        uid: u32,
        gid: u32,
    },
    Symlink {
        target: String,
    },
    Absent,
    /// A file copied from the cache: its checksum and length, mode and
    /// owner (read back streaming, never whole into memory).
    Cached {
        sha256: crate::digest::Sha256,
        len: u64,
        meta: (u16, u32, u32),
    },
}

#[derive(Debug, Clone)]
pub struct Expectation {
    pub target: Target,
    pub path: String,
    pub expect: Expect,
}

/// Partition numbers of the image's boot FAT and root ext4.
pub struct Parts {
    pub boot: Option<u32>,
    pub root: u32,
}

pub fn parts(image: &Image) -> Result<Parts> {
    // A filesystem that cannot be read drops out of layout detection, which
    // would then blame the layout ("no boot FAT partition"): say what broke.
    image.check_filesystems()?;
    let layout = image.layout().with_context(|| {
        format!(
            "{}: not an image layout we build from",
            image.path().display()
        )
    })?;
    Ok(Parts {
        boot: layout.boot,
        root: layout.root,
    })
}

/// Applies `specs` to `image` (in a build, an overlay over the base),
/// stamping new files with `time`.
pub fn apply(image: &Image, specs: &[FileSpec], time: i64) -> Result<Vec<Expectation>> {
    let parts = parts(image)?;
    let boot: Vec<&FileSpec> = specs.iter().filter(|s| s.target == Target::Boot).collect();
    let root: Vec<&FileSpec> = specs.iter().filter(|s| s.target == Target::Root).collect();
    for spec in specs {
        // Sizes only: the bytes may be secrets.
        use crate::render::FileKind;
        let what = match &spec.kind {
            FileKind::File { bytes } => format!("{} bytes", bytes.len()),
            FileKind::Dir => "directory".to_owned(),
            FileKind::Symlink { target } => format!("symlink to {target}"),
            FileKind::Absent => "removed".to_owned(),
            FileKind::AccountEntries { .. } => "account entries merged".to_owned(),
            FileKind::CmdlineEdit { .. } => "kernel command line edited".to_owned(),
            FileKind::Cached { file } => format!("{} from the cache", file.what),
        };
        tracing::debug!(
            "{}: {:?} {} ({what}, mode {:o}, {}:{})",
            image.path().display(),
            spec.target,
            spec.path,
            spec.mode,
            spec.uid,
            spec.gid
        );
    }
    let mut expect = Vec::new();
    if !root.is_empty() {
        expect.extend(patch_root(image, parts.root, &root, time)?);
    }
    if !boot.is_empty() {
        let Some(n) = parts.boot else {
            bail!(
                "{}: the image has no boot FAT partition for {}",
                image.path().display(),
                boot.iter()
                    .map(|s| s.path.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        };
        expect.extend(patch_boot(image, n, &boot)?);
    }
    Ok(expect)
}

fn patch_root(image: &Image, n: u32, specs: &[&FileSpec], time: i64) -> Result<Vec<Expectation>> {
    let shown = format!("{}: partition {n} (root)", image.path().display());
    let (_, view) = image.filesystem(&n.to_string())?;
    if !matches!(view, Filesystem::Ext4(_)) {
        bail!("{shown}: the root filesystem is not ext4");
    }
    let mut ops = Vec::new();
    let mut expect = Vec::new();
    // Directories this batch creates, so parents are made once.
    let mut made: std::collections::BTreeSet<String> = Default::default();
    for s in specs {
        // Permission bits only: the mask makes the narrowing exact.
        let mode = (s.mode & 0o7777) as u16;
        let meta = Meta {
            mode,
            uid: s.uid,
            gid: s.gid,
            mtime: time,
        };
        let mut ensure_parent = |path: &str, ops: &mut Vec<Op>| {
            let parent = match path.rfind('/') {
                Some(0) | None => return,
                Some(i) => &path[..i],
            };
            if !made.contains(parent) && !view.exists(parent) {
                ops.push(Op::Mkdir {
                    path: parent.to_string(),
                    meta: Meta {
                        mode: 0o755,
                        uid: 0,
                        gid: 0,
                        mtime: time,
                    },
                    parents: true,
                });
                made.insert(parent.to_string());
            }
        };
        let e = match &s.kind {
            FileKind::File { bytes } => {
                ensure_parent(&s.path, &mut ops);
                ops.push(Op::WriteFile {
                    path: s.path.clone(),
                    content: Content::Bytes(bytes.clone()),
                    meta,
                });
                Expect::File {
                    bytes: bytes.clone(),
                    meta: Some((mode, s.uid, s.gid)),
                }
            }
            FileKind::Dir => {
                ops.push(Op::Mkdir {
                    path: s.path.clone(),
                    meta,
                    parents: true,
                });
                made.insert(s.path.clone());
                Expect::Dir {
                    mode,
                    uid: s.uid,
                    gid: s.gid,
                }
            }
            FileKind::Symlink { target } => {
                ensure_parent(&s.path, &mut ops);
                ops.push(Op::Symlink {
                    path: s.path.clone(),
                    target: target.as_bytes().to_vec(),
                    meta,
                });
                Expect::Symlink {
                    target: target.clone(),
                }
            }
            FileKind::Absent => {
                ops.push(Op::Remove {
                    path: s.path.clone(),
                    missing_ok: true,
                });
                Expect::Absent
            }
            FileKind::AccountEntries { db, entries } => {
                let existing = view
                    .read_bounded(&s.path, crate::fs::limits::PARSED_FILE)
                    .with_context(|| shown.clone())?;
                let existing = String::from_utf8(existing)
                    .with_context(|| format!("{shown}: {} is not UTF-8", s.path))?;
                let merged = entries
                    .merge(*db, &existing)
                    .with_context(|| format!("{shown}: merging {}", s.path))?;
                let st = view
                    .stat(&s.path)
                    .with_context(|| format!("{shown}: {}", s.path))?;
                if st.kind != EntryKind::File {
                    bail!("{shown}: {} is not a regular file", s.path);
                }
                let keep = Meta {
                    mode: st.mode.unwrap_or(0o644),
                    uid: st.uid.unwrap_or(0),
                    gid: st.gid.unwrap_or(0),
                    mtime: time,
                };
                ops.push(Op::WriteFile {
                    path: s.path.clone(),
                    content: Content::Bytes(merged.clone().into_bytes()),
                    meta: keep,
                });
                Expect::File {
                    bytes: merged.into_bytes(),
                    meta: Some((keep.mode, keep.uid, keep.gid)),
                }
            }
            FileKind::CmdlineEdit { .. } => {
                bail!("{}: a cmdline edit belongs on the boot partition", s.path)
            }
            FileKind::Cached { file } => {
                let Some(blob) = &file.found else {
                    bail!(
                        "{shown}: {} for {} is not in the cache (`homelab-image pull` \
                         fetches it)",
                        file.what,
                        s.path
                    );
                };
                ensure_parent(&s.path, &mut ops);
                // The writer streams the file and checks its length as it
                // reads; its checksum is checked on the image afterwards
                // (`verify`), so a cache file changed meanwhile is caught.
                ops.push(Op::WriteFile {
                    path: s.path.clone(),
                    content: Content::File {
                        path: blob.path.clone(),
                        len: blob.len,
                    },
                    meta,
                });
                Expect::Cached {
                    sha256: blob.sha256,
                    len: blob.len,
                    meta: (mode, s.uid, s.gid),
                }
            }
        };
        expect.push(Expectation {
            target: Target::Root,
            path: s.path.clone(),
            expect: e,
        });
    }
    drop(view);
    let part = image.partition(&n.to_string())?;
    crate::fs::ext4::apply(&image.window(part), &ops, time).with_context(|| shown.clone())?;
    Ok(expect)
}

fn patch_boot(image: &Image, n: u32, specs: &[&FileSpec]) -> Result<Vec<Expectation>> {
    let shown = format!("{}: partition {n} (boot)", image.path().display());
    let part = image.partition(&n.to_string())?;
    let vol = crate::fs::fat::FatVolume::open(image.window(part)).with_context(|| shown.clone())?;
    let mut expect = Vec::new();
    for s in specs {
        let bytes = match &s.kind {
            FileKind::File { bytes } => bytes.clone(),
            FileKind::CmdlineEdit { ops } => {
                let old = match crate::fs::fat_read_bounded(
                    &vol,
                    &s.path,
                    crate::fs::limits::PARSED_FILE,
                ) {
                    Ok(bytes) => bytes,
                    Err(FsError::NotFound(_) | FsError::NotADirectory(_)) => {
                        // The A/B boot layout of Ubuntu 26.04 keeps it elsewhere.
                        let hint = if s.path == "cmdline.txt" && vol.exists(AB_CMDLINE) {
                            format!(
                                " (this image keeps it at {AB_CMDLINE}, the layout of \
                                 Ubuntu 26.04: set `os: ubuntu-26.04` for this node)"
                            )
                        } else {
                            String::new()
                        };
                        bail!("{shown}: the image has no {} to edit{hint}", s.path);
                    }
                    Err(e) => {
                        return Err(e).with_context(|| shown.clone());
                    }
                };
                let old = String::from_utf8(old)
                    .with_context(|| format!("{shown}: {} is not text", s.path))?;
                edit_cmdline(&old, ops).into_bytes()
            }
            other => bail!(
                "{shown}: {} ({}) cannot be written to FAT",
                s.path,
                other.name()
            ),
        };
        vol.write_file(&s.path, &bytes)
            .with_context(|| shown.clone())?;
        expect.push(Expectation {
            target: Target::Boot,
            path: s.path.clone(),
            expect: Expect::File { bytes, meta: None },
        });
    }
    vol.unmount().with_context(|| shown.clone())?;
    Ok(expect)
}

/// Re-reads every expectation with our readers (fatfs, ext4-view).
pub fn verify(path: &Path, expect: &[Expectation]) -> Result<()> {
    verify_image(&Image::open(path)?, expect)
}

/// `verify` on an image already open (`flash` checks a written disk).
pub fn verify_image(image: &Image, expect: &[Expectation]) -> Result<()> {
    let parts = parts(image)?;
    let root = image.filesystem(&parts.root.to_string())?.1;
    let boot = match parts.boot {
        Some(n) => Some(image.filesystem(&n.to_string())?.1),
        None => None,
    };
    for e in expect {
        let fs = match e.target {
            Target::Root => &root,
            Target::Boot => boot.as_ref().context("no boot partition")?,
        };
        let bad = |why: String| anyhow::anyhow!("self-check: {} {}: {why}", e.target, e.path);
        match &e.expect {
            Expect::File { bytes, meta } => {
                // No more than was planned: anything longer differs anyway.
                let limit = bytes.len() as u64; // as: usize fits in u64
                let got = fs
                    .read_bounded(&e.path, limit)
                    .map_err(|err| bad(err.to_string()))?;
                if &got != bytes {
                    return Err(bad(format!(
                        "holds {} bytes that differ from the {} planned",
                        got.len(),
                        bytes.len()
                    )));
                }
                if let Some((mode, uid, gid)) = meta {
                    let st = fs.stat(&e.path).map_err(|err| bad(err.to_string()))?;
                    let got = (
                        st.mode.unwrap_or(0) & 0o7777,
                        st.uid.unwrap_or(0),
                        st.gid.unwrap_or(0),
                    );
                    if got != (*mode, *uid, *gid) {
                        return Err(bad(format!(
                            "mode/owner {got:?}, planned {:?}",
                            (mode, uid, gid)
                        )));
                    }
                }
            }
            Expect::Dir { mode, uid, gid } => {
                let st = fs.stat(&e.path).map_err(|err| bad(err.to_string()))?;
                let got = (
                    st.mode.unwrap_or(0) & 0o7777,
                    st.uid.unwrap_or(0),
                    st.gid.unwrap_or(0),
                );
                if st.kind != EntryKind::Dir || got != (*mode, *uid, *gid) {
                    return Err(bad(format!(
                        "is {:?} {got:?}, planned a directory {:?}",
                        st.kind,
                        (mode, uid, gid)
                    )));
                }
            }
            Expect::Symlink { target } => {
                let st = fs.stat(&e.path).map_err(|err| bad(err.to_string()))?;
                if st.link_target.as_deref() != Some(target.as_str()) {
                    return Err(bad(format!(
                        "links to {:?}, planned {target:?}",
                        st.link_target
                    )));
                }
            }
            Expect::Absent => {
                if fs.exists(&e.path) {
                    return Err(bad("still exists".into()));
                }
            }
            Expect::Cached { sha256, len, meta } => {
                let mut hashing = HashingSink::default();
                let got_len = fs.stream(&e.path, &mut hashing).map_err(|err| match err {
                    crate::fs::StreamError::Read(r) => bad(r.to_string()),
                    // Hashing never fails to write.
                    crate::fs::StreamError::Write(w) => bad(w.to_string()),
                })?;
                let got = crate::digest::Sha256::from_bytes(hashing.hasher.finalize().into());
                if got_len != *len || got != *sha256 {
                    return Err(bad(format!(
                        "holds {got_len} bytes with SHA-256 {got}, planned {len} bytes \
                         with {sha256} (the cache file changed during the build?)"
                    )));
                }
                let st = fs.stat(&e.path).map_err(|err| bad(err.to_string()))?;
                let have = (
                    st.mode.unwrap_or(0) & 0o7777,
                    st.uid.unwrap_or(0),
                    st.gid.unwrap_or(0),
                );
                if have != *meta {
                    return Err(bad(format!("mode/owner {have:?}, planned {meta:?}")));
                }
            }
        }
    }
    Ok(())
}

/// A writer that only hashes what it is given.
#[derive(Default)]
struct HashingSink {
    hasher: sha2::Sha256,
}

impl std::io::Write for HashingSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        sha2::Digest::update(&mut self.hasher, buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
