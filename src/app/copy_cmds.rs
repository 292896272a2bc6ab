//! `cp` and `rm`: edits of one partition of an image, through the ext4
//! writer or the FAT driver, as transactions. The image is locked against
//! other writers and opened under a copy-on-write overlay; every step
//! writes into the overlay; the result is then read back through a fresh
//! open of the filesystem (for FAT that open checks every cluster chain
//! again) and compared with what was meant; only then are the changed
//! pages committed to the file. A refusal or error anywhere before the
//! commit leaves the file byte-identical.

use std::io::{Read, Write};

use anyhow::{Context, Result, bail};

use crate::cli::{CpArgs, RmArgs};
use crate::fs::copy_in::{self, DestState, Item, ItemKind};
use crate::fs::ext4::{Content, Meta, Op};
use crate::fs::{EntryKind, Filesystem, FsError, FsType, StreamError};
use crate::image::Image;

fn is_fat(image: &Image, n: u32) -> Result<bool> {
    match image.fs_info(n) {
        Ok(Some(info)) => Ok(matches!(info.fs_type, FsType::Fat(_))),
        Ok(None) => bail!(
            "{}: partition {n} holds no filesystem we can write",
            image.path().display()
        ),
        Err(e) => bail!("{}: partition {n}: {e}", image.path().display()),
    }
}

pub fn cp(args: &CpArgs) -> Result<()> {
    let (sources, dest) = args.paths.split_at(args.paths.len() - 1);
    let dest = dest[0].to_string_lossy().to_string();
    let (image, edit) = Image::open_edit(&args.image)?;
    let (n, fs) = image.filesystem(&args.partition)?;
    let where_ = format!("{}: partition {n}", args.image.display());
    let state = match fs.stat(&dest) {
        Ok(e) if e.kind == EntryKind::Dir => DestState::Directory,
        Ok(_) => DestState::Other,
        Err(_) => DestState::Missing,
    };
    drop(fs);
    let items = copy_in::plan(sources, &dest, state, args.recursive)?;
    if is_fat(&image, n)? {
        if args.mode.is_some() || args.owner.uid != 0 || args.owner.gid != 0 {
            bail!("{where_}: FAT has no owners or modes; drop --owner/--mode");
        }
        cp_fat(&image, n, &items).with_context(|| where_.clone())?;
    } else {
        let ops: Vec<Op> = items.iter().map(|it| to_op(it, args)).collect();
        let part = image.partition(&n.to_string())?;
        let summary = crate::fs::ext4::apply(&image.window(part), &ops, crate::time::stamp_now())
            .with_context(|| where_.clone())?;
        tracing::info!(
            "copied {} files ({}), {} directories, {} symlinks into partition {n}",
            summary.files_created + summary.files_replaced,
            crate::io::units::human_size(summary.bytes),
            summary.dirs_created,
            summary.symlinks
        );
    }
    check_copied(&image, n, &items, args).with_context(|| {
        format!("{where_}: self-check after copying (the image was not changed)")
    })?;
    let pages = edit.commit()?;
    tracing::info!(
        "{pages} blocks of 4 KiB written to {}",
        args.image.display()
    );
    Ok(())
}

fn to_op(it: &Item, args: &CpArgs) -> Op {
    let meta = |mode: u16| Meta {
        mode,
        uid: args.owner.uid,
        gid: args.owner.gid,
        mtime: it.mtime,
    };
    match &it.kind {
        ItemKind::Dir => Op::Mkdir {
            path: it.dest.clone(),
            meta: meta(it.mode),
            parents: false,
        },
        ItemKind::File { source, len } => Op::WriteFile {
            path: it.dest.clone(),
            content: Content::File {
                path: source.clone(),
                len: *len,
            },
            meta: meta(args.mode.unwrap_or(it.mode)),
        },
        ItemKind::Symlink { target } => Op::Symlink {
            path: it.dest.clone(),
            target: target.clone(),
            meta: meta(0o777),
        },
    }
}

fn cp_fat(image: &Image, n: u32, items: &[Item]) -> Result<()> {
    let part = image.table().get(n).context("the partition vanished")?;
    let vol = crate::fs::fat::FatVolume::open(image.window(part))?;
    // Refusals first, so the overlay holds no half-done work to explain.
    for it in items {
        match &it.kind {
            ItemKind::Dir if !vol.exists(&it.dest) => bail!(
                "{}: creating directories on FAT is not supported; copy into existing ones",
                it.dest
            ),
            ItemKind::Symlink { .. } => bail!("{}: FAT cannot hold symlinks", it.dest),
            ItemKind::File { source, len } if *len > crate::fs::fat::MAX_FILE_SIZE => bail!(
                "{}: {} bytes; FAT cannot hold a file of 4 GiB or more",
                source.display(),
                len
            ),
            _ => {}
        }
    }
    for it in items {
        if let ItemKind::File { source, .. } = &it.kind {
            let mut src = std::fs::File::open(source)
                .with_context(|| format!("{}: cannot read it", source.display()))?;
            match vol.write_from(&it.dest, &mut src) {
                Err(FsError::Input(e)) => {
                    return Err(e).with_context(|| format!("{}: cannot read it", source.display()));
                }
                other => other?,
            }
        }
    }
    vol.unmount()?;
    Ok(())
}

/// Reads back everything `cp` wrote, through a fresh open of the
/// partition (on FAT, a full check of the volume), and compares it with
/// the sources.
fn check_copied(image: &Image, n: u32, items: &[Item], args: &CpArgs) -> Result<()> {
    let (_, fs) = image.filesystem(&n.to_string())?;
    for it in items {
        let st = fs.stat(&it.dest)?;
        let bad = |why: String| anyhow::anyhow!("{}: {why}", it.dest);
        match &it.kind {
            ItemKind::Dir if st.kind != EntryKind::Dir => {
                return Err(bad("is not the directory planned".into()));
            }
            ItemKind::Dir => {}
            ItemKind::Symlink { target } => {
                let want = String::from_utf8_lossy(target);
                if st.link_target.as_deref() != Some(&*want) {
                    return Err(bad(format!("links to {:?}, not {want:?}", st.link_target)));
                }
            }
            ItemKind::File { source, len } => {
                if st.kind != EntryKind::File || st.size != *len {
                    return Err(bad(format!(
                        "is a {:?} of {} bytes, not the file of {len} bytes planned",
                        st.kind, st.size
                    )));
                }
                if let (Some(mode), Some(want)) = (st.mode, args.mode)
                    && mode & 0o7777 != want
                {
                    return Err(bad(format!("has mode {:o}, not {want:o}", mode & 0o7777)));
                }
                same_content(&fs, &it.dest, source).map_err(bad)?;
            }
        }
    }
    Ok(())
}

/// Streams the file at `path` in `fs` against the local file `source`.
fn same_content(fs: &Filesystem, path: &str, source: &std::path::Path) -> Result<(), String> {
    let src = std::fs::File::open(source)
        .map_err(|e| format!("cannot read {} again: {e}", source.display()))?;
    let mut cmp = SameAs {
        src: std::io::BufReader::new(src),
        pos: 0,
        buf: Vec::new(),
    };
    match fs.stream(path, &mut cmp) {
        Ok(_) => {}
        Err(StreamError::Write(e)) => return Err(format!("{e} ({})", source.display())),
        Err(StreamError::Read(e)) => return Err(format!("reading it back: {e}")),
    }
    let mut one = [0u8; 1];
    match cmp.src.read(&mut one) {
        Ok(0) => Ok(()),
        _ => Err(format!(
            "holds {} bytes, fewer than {}",
            cmp.pos,
            source.display()
        )),
    }
}

/// A sink that checks what is written to it against what `src` reads.
struct SameAs<R> {
    src: R,
    pos: u64,
    buf: Vec<u8>,
}

impl<R: Read> Write for SameAs<R> {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.resize(data.len(), 0);
        let got = read_full(&mut self.src, &mut self.buf)?;
        if let Some(i) = (0..got).find(|&i| self.buf[i] != data[i]) {
            return Err(std::io::Error::other(format!(
                "differs from the source at byte {}",
                self.pos + i as u64 // as: i < data.len()
            )));
        }
        if got < data.len() {
            return Err(std::io::Error::other(format!(
                "is longer than the source ({} bytes)",
                self.pos + got as u64 // as: got <= data.len()
            )));
        }
        self.pos += data.len() as u64; // as: usize fits u64
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Reads until `buf` is full or the end; returns the bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(k) => got += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

pub fn rm(args: &RmArgs) -> Result<()> {
    let (image, edit) = Image::open_edit(&args.image)?;
    let (n, fs) = image.filesystem(&args.partition)?;
    let where_ = format!("{}: partition {n}", args.image.display());
    // Refusals that need no writer: relative paths, and a trailing `/`,
    // which (as for rm(1)) means "a directory" and so never names
    // something rm can remove.
    let mut paths = Vec::new();
    for p in &args.paths {
        if !p.starts_with('/') {
            bail!("{where_}: {p}: paths inside the image must be absolute");
        }
        if p.len() > 1 && p.ends_with('/') {
            match fs.stat(p) {
                Ok(e) if e.kind == EntryKind::Dir => bail!("{where_}: {p}: is a directory"),
                Ok(_) => bail!("{where_}: {p}: not a directory"),
                Err(FsError::NotFound(_)) if args.force => continue,
                Err(e) => return Err(e).with_context(|| where_.clone()),
            }
        }
        paths.push(p.clone());
    }
    drop(fs);
    if is_fat(&image, n)? {
        rm_fat(&image, n, &paths, args.force).with_context(|| where_.clone())?;
    } else {
        let ops: Vec<Op> = paths
            .iter()
            .map(|p| Op::Remove {
                path: p.clone(),
                missing_ok: args.force,
            })
            .collect();
        let part = image.partition(&n.to_string())?;
        crate::fs::ext4::apply(&image.window(part), &ops, crate::time::stamp_now())
            .with_context(|| where_.clone())?;
    }
    let (_, fs) = image
        .filesystem(&n.to_string())
        .with_context(|| format!("{where_}: self-check after removing"))?;
    if let Some(p) = paths.iter().find(|p| fs.exists(p)) {
        bail!(
            "{where_}: self-check after removing: {p} is still there (the image was not changed)"
        );
    }
    drop(fs);
    edit.commit()?;
    Ok(())
}

/// `rm` on FAT: every path is checked before the first is removed, so a
/// bad one is refused before any work (the overlay would discard it
/// anyway).
fn rm_fat(image: &Image, n: u32, paths: &[String], force: bool) -> Result<()> {
    let part = image.table().get(n).context("the partition vanished")?;
    let vol = crate::fs::fat::FatVolume::open(image.window(part))?;
    let mut doomed = Vec::new();
    for p in paths {
        match vol.removable(p)? {
            true => doomed.push(p),
            false if force => {}
            false => bail!("{p}: no such file or directory"),
        }
    }
    for p in doomed {
        vol.remove_file(p)?;
    }
    vol.unmount()?;
    Ok(())
}
