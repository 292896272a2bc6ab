//! `cp` and `rm`: edits of one partition of an image, through the ext4
//! writer or the FAT driver.

use anyhow::{Context, Result, bail};

use crate::cli::{CpArgs, RmArgs};
use crate::fs::FsType;
use crate::fs::copy_in::{self, DestState, Item, ItemKind};
use crate::fs::ext4::{Content, Meta, Op};
use crate::image::Image;

/// The time stamped on directories we change: `SOURCE_DATE_EPOCH` when set
/// (reproducible builds), else now.
fn now() -> i64 {
    if let Some(t) = crate::build::source_date_epoch() {
        return t;
    }
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

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
    let image = Image::open_rw(&args.image)?;
    let where_ = |n: u32| format!("{}: partition {n}", args.image.display());
    let (n, fs) = image.filesystem(&args.partition)?;
    let state = match fs.stat(&dest) {
        Ok(e) if e.kind == crate::fs::EntryKind::Dir => DestState::Directory,
        Ok(_) => DestState::Other,
        Err(_) => DestState::Missing,
    };
    drop(fs);
    let items = copy_in::plan(sources, &dest, state, args.recursive)?;
    if is_fat(&image, n)? {
        if args.mode.is_some() || args.owner.uid != 0 || args.owner.gid != 0 {
            bail!(
                "{}: FAT has no owners or modes; drop --owner/--mode",
                where_(n)
            );
        }
        return cp_fat(&image, n, &items).with_context(|| where_(n));
    }
    let ops: Vec<Op> = items.iter().map(|it| to_op(it, args)).collect();
    let part = image.partition(&args.partition)?;
    let window = image.window(part);
    let summary = crate::fs::ext4::apply(&window, &ops, now()).with_context(|| where_(n))?;
    window_sync(&image)?;
    tracing::info!(
        "copied {} files ({}), {} directories, {} symlinks into partition {n}",
        summary.files_created + summary.files_replaced,
        crate::io::units::human_size(summary.bytes),
        summary.dirs_created,
        summary.symlinks
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
    // Check everything first so a refusal writes nothing.
    for it in items {
        match &it.kind {
            ItemKind::Dir if !vol.exists(&it.dest) => bail!(
                "{}: creating directories on FAT is not supported; copy into existing ones",
                it.dest
            ),
            ItemKind::Symlink { .. } => bail!("{}: FAT cannot hold symlinks", it.dest),
            _ => {}
        }
    }
    for it in items {
        if let ItemKind::File { source, .. } = &it.kind {
            let bytes =
                std::fs::read(source).with_context(|| format!("reading {}", source.display()))?;
            vol.write_file(&it.dest, &bytes)?;
        }
    }
    vol.unmount()?;
    window_sync(image)
}

/// `rm` on FAT: every path is checked before the first is removed, so a
/// bad one changes nothing.
fn rm_fat(image: &Image, n: u32, args: &RmArgs, where_: &str) -> Result<()> {
    let part = image.partition(&n.to_string())?;
    let vol =
        crate::fs::fat::FatVolume::open(image.window(part)).with_context(|| where_.to_string())?;
    let mut doomed = Vec::new();
    for p in &args.paths {
        if !p.starts_with('/') {
            bail!("{where_}: {p}: paths inside the image must be absolute");
        }
        match vol.removable(p).with_context(|| where_.to_string())? {
            true => doomed.push(p),
            false if args.force => {}
            false => bail!("{where_}: {p}: no such file or directory"),
        }
    }
    for p in doomed {
        vol.remove_file(p).with_context(|| where_.to_string())?;
    }
    vol.unmount().with_context(|| where_.to_string())?;
    window_sync(image)
}

fn window_sync(image: &Image) -> Result<()> {
    image
        .sync()
        .with_context(|| format!("{}: flushing the image to disk", image.path().display()))
}

pub fn rm(args: &RmArgs) -> Result<()> {
    let image = Image::open_rw(&args.image)?;
    let (n, fs) = image.filesystem(&args.partition)?;
    drop(fs);
    let where_ = format!("{}: partition {n}", args.image.display());
    if is_fat(&image, n)? {
        return rm_fat(&image, n, args, &where_);
    }
    let ops: Vec<Op> = args
        .paths
        .iter()
        .map(|p| Op::Remove {
            path: p.clone(),
            missing_ok: args.force,
        })
        .collect();
    let part = image.partition(&args.partition)?;
    crate::fs::ext4::apply(&image.window(part), &ops, now()).with_context(|| where_.clone())?;
    window_sync(&image)
}
