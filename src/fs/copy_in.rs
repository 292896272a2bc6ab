//! What `cp` copies: local files, symlinks and directory trees turned into
//! an ordered list of items with their paths inside the image, following
//! `cp -r`'s naming rules. Filesystem-agnostic: the caller writes the items
//! into ext4 or FAT.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemKind {
    Dir,
    File { source: PathBuf, len: u64 },
    Symlink { target: Vec<u8> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// Absolute path inside the filesystem.
    pub dest: String,
    pub kind: ItemKind,
    /// Permission bits of the source.
    pub mode: u16,
    pub mtime: i64,
}

/// How the destination looks inside the image before copying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DestState {
    Missing,
    Directory,
    Other,
}

/// The items that `cp [-r] SOURCES... DEST` creates, parents before
/// children, directory entries in name order. As with GNU cp: a source
/// ending in `/.` copies the directory's contents (into DEST if it is a
/// directory, else as DEST); a DEST ending in `/` must be a directory, or
/// be created as one from a directory source.
pub fn plan(
    sources: &[PathBuf],
    dest: &str,
    dest_state: DestState,
    recursive: bool,
) -> Result<Vec<Item>> {
    if !dest.starts_with('/') {
        bail!("{dest}: the destination must be an absolute path inside the partition");
    }
    if sources.len() > 1 && dest_state != DestState::Directory {
        bail!("{dest}: copying several sources needs an existing directory as the destination");
    }
    let dest_is_dir_path = dest.len() > 1 && dest.ends_with('/');
    if dest_is_dir_path && dest_state == DestState::Other {
        bail!("{dest}: not a directory");
    }
    let mut out = Vec::new();
    for src in sources {
        let meta = if recursive {
            std::fs::symlink_metadata(src)
        } else {
            std::fs::metadata(src)
        }
        .with_context(|| format!("{}: cannot read it", src.display()))?;
        if meta.is_dir() && !recursive {
            bail!(
                "{}: is a directory (use -r to copy directories)",
                src.display()
            );
        }
        if dest_is_dir_path && dest_state == DestState::Missing && !meta.is_dir() {
            bail!("{dest}: not a directory (and {} is not one)", src.display());
        }
        let contents = names_its_contents(src);
        let target = if dest_state == DestState::Directory && !contents {
            let name = src
                .file_name()
                .with_context(|| format!("{}: has no file name to copy under", src.display()))?;
            join(dest, &name.to_string_lossy())
        } else {
            dest.trim_end_matches('/').to_string()
        };
        if target.is_empty() && !(contents && dest_state == DestState::Directory) {
            bail!("{dest}: cannot replace the root directory");
        }
        let first = out.len();
        walk(src, &target, &mut out)?;
        if contents && dest_state == DestState::Directory {
            // DEST itself stays as it is: only what is inside SRC is copied.
            out.remove(first);
        }
    }
    // As GNU cp does, refuse to write one path twice in a run (the second
    // copy would silently replace the first).
    let mut seen = std::collections::HashSet::new();
    if let Some(twice) = out.iter().find(|it| !seen.insert(it.dest.as_str())) {
        bail!(
            "{}: more than one source would be copied to this path",
            twice.dest
        );
    }
    Ok(out)
}

/// Whether `src` ends in a `.` component (`dir/.`, `dir/./`, `.`): Path
/// drops it when parsing, so the raw bytes are looked at.
fn names_its_contents(src: &Path) -> bool {
    let raw = src.as_os_str().as_encoded_bytes();
    let mut end = raw.len();
    while end > 1 && raw[end - 1] == b'/' {
        end -= 1;
    }
    let raw = &raw[..end];
    raw == b"." || raw.ends_with(b"/.")
}

fn join(dir: &str, name: &str) -> String {
    format!("{}/{name}", dir.trim_end_matches('/'))
}

fn walk(src: &Path, dest: &str, out: &mut Vec<Item>) -> Result<()> {
    let meta = std::fs::symlink_metadata(src)
        .with_context(|| format!("{}: cannot read it", src.display()))?;
    // Permission bits fit 12 bits.
    let mode = (meta.permissions().mode() & 0o7777) as u16;
    let mtime = meta.mtime();
    let ft = meta.file_type();
    let kind = if ft.is_dir() {
        ItemKind::Dir
    } else if ft.is_symlink() {
        let target = std::fs::read_link(src)
            .with_context(|| format!("{}: cannot read the link", src.display()))?;
        ItemKind::Symlink {
            target: target.as_os_str().as_encoded_bytes().to_vec(),
        }
    } else if ft.is_file() {
        ItemKind::File {
            source: src.to_path_buf(),
            len: meta.len(),
        }
    } else {
        // A top-level symlink followed by metadata() lands here as its target.
        let followed = std::fs::metadata(src).ok();
        match followed {
            Some(m) if m.is_file() => ItemKind::File {
                source: src.to_path_buf(),
                len: m.len(),
            },
            _ => bail!(
                "{}: not a regular file, directory or symlink",
                src.display()
            ),
        }
    };
    let is_dir = kind == ItemKind::Dir;
    out.push(Item {
        dest: dest.to_string(),
        kind,
        mode,
        mtime,
    });
    if is_dir {
        let mut names: Vec<_> = std::fs::read_dir(src)
            .with_context(|| format!("{}: cannot list it", src.display()))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<std::io::Result<_>>()
            .with_context(|| format!("{}: cannot list it", src.display()))?;
        names.sort();
        for name in names {
            walk(&src.join(&name), &join(dest, &name.to_string_lossy()), out)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("conf/sub")).unwrap();
        std::fs::write(t.path().join("conf/a"), "a").unwrap();
        std::fs::write(t.path().join("conf/sub/b"), "bb").unwrap();
        std::os::unix::fs::symlink("a", t.path().join("conf/link")).unwrap();
        t
    }

    fn dests(items: &[Item]) -> Vec<&str> {
        items.iter().map(|i| i.dest.as_str()).collect()
    }

    #[test]
    fn a_directory_to_a_missing_path_becomes_that_path() {
        let t = tree();
        let items = plan(
            &[t.path().join("conf")],
            "/etc/new",
            DestState::Missing,
            true,
        )
        .unwrap();
        assert_eq!(
            dests(&items),
            [
                "/etc/new",
                "/etc/new/a",
                "/etc/new/link",
                "/etc/new/sub",
                "/etc/new/sub/b"
            ]
        );
        assert_eq!(
            items[2].kind,
            ItemKind::Symlink {
                target: b"a".to_vec()
            }
        );
    }

    #[test]
    fn into_an_existing_directory_keeps_the_name() {
        let t = tree();
        let items = plan(
            &[t.path().join("conf")],
            "/etc/",
            DestState::Directory,
            true,
        )
        .unwrap();
        assert_eq!(items[0].dest, "/etc/conf");
    }

    #[test]
    fn refusals() {
        let t = tree();
        let e = plan(&[t.path().join("conf")], "/x", DestState::Missing, false).unwrap_err();
        assert!(e.to_string().contains("use -r"), "{e}");
        let two = [t.path().join("conf/a"), t.path().join("conf/sub/b")];
        let e = plan(&two, "/x", DestState::Missing, false).unwrap_err();
        assert!(e.to_string().contains("existing directory"), "{e}");
        let e = plan(&[t.path().join("nope")], "/x", DestState::Missing, false).unwrap_err();
        assert!(e.to_string().contains("nope: cannot read it"), "{e}");
    }

    #[test]
    fn a_source_ending_in_dot_copies_the_contents() {
        let t = tree();
        let src = PathBuf::from(format!("{}/conf/.", t.path().display()));
        let into = plan(
            std::slice::from_ref(&src),
            "/etc",
            DestState::Directory,
            true,
        )
        .unwrap();
        assert_eq!(
            dests(&into),
            ["/etc/a", "/etc/link", "/etc/sub", "/etc/sub/b"],
            "the contents go into the existing directory, which is left alone"
        );
        let as_new = plan(&[src], "/etc/new", DestState::Missing, true).unwrap();
        assert_eq!(as_new[0].dest, "/etc/new");
        assert_eq!(as_new.len(), 5);
        let root = PathBuf::from(format!("{}/conf/./", t.path().display()));
        let into_root = plan(&[root], "/", DestState::Directory, true).unwrap();
        assert_eq!(into_root[0].dest, "/a");
    }

    #[test]
    fn two_sources_for_one_destination_are_refused() {
        let t = tree();
        std::fs::create_dir(t.path().join("other")).unwrap();
        std::fs::write(t.path().join("other/a"), "other a").unwrap();
        let both = [t.path().join("conf/a"), t.path().join("other/a")];
        let e = plan(&both, "/etc", DestState::Directory, false).unwrap_err();
        assert!(
            e.to_string().contains("/etc/a: more than one source"),
            "{e}"
        );
    }

    #[test]
    fn a_destination_ending_in_slash_must_be_a_directory() {
        let t = tree();
        let file = [t.path().join("conf/a")];
        let e = plan(&file, "/etc/hostname/", DestState::Other, false).unwrap_err();
        assert!(
            e.to_string().contains("/etc/hostname/: not a directory"),
            "{e}"
        );
        let e = plan(&file, "/new/", DestState::Missing, false).unwrap_err();
        assert!(e.to_string().contains("/new/: not a directory"), "{e}");
        let dir = [t.path().join("conf")];
        let made = plan(&dir, "/new/", DestState::Missing, true).unwrap();
        assert_eq!(made[0].dest, "/new");
        let e = plan(
            &[PathBuf::from(format!("{}/conf/a/", t.path().display()))],
            "/x",
            DestState::Missing,
            false,
        )
        .unwrap_err();
        assert!(format!("{e:#}").contains("Not a directory"), "{e:#}");
    }
}
