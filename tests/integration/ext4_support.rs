//! Support for the ext4 writer tests: the mke2fs feature matrix, a model of
//! the tree we expect, and the oracles that judge an image against it
//! (e2fsck, ext4-view, debugfs, the kernel through a read-only loop mount).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use homelab_image::fs::ext4::{Content, Meta, Op, Summary, WriteError, apply};
use homelab_image::io::{ByteLen, ByteOffset, ByteRange, PartitionWindow};

use crate::util::run_ok;

/// One filesystem shape of the matrix: mke2fs arguments and size.
pub struct Config {
    pub name: &'static str,
    pub mkfs: &'static [&'static str],
    pub size_mib: u64,
    /// Run after mke2fs (e.g. a UUID change that separates the csum seed).
    pub tune: &'static [&'static str],
}

/// ext4-view refuses 128-byte inodes under metadata_csum (it wants room
/// for i_checksum_hi, which the kernel and e2fsck do not require).
pub fn ext4_view_reads(img: &Path) -> bool {
    let out = run_ok(Command::new("dumpe2fs").arg("-h").arg(img));
    let text = String::from_utf8_lossy(&out.stdout);
    let inode_128 = text
        .lines()
        .any(|l| l.starts_with("Inode size:") && l.trim_end().ends_with(" 128"));
    !(inode_128 && text.contains("metadata_csum"))
}

pub const NOW: i64 = 1_763_700_000;

pub const CONFIGS: &[Config] = &[
    Config {
        name: "ubuntu-24.04",
        mkfs: &["-b", "4096", "-O", "^orphan_file,^metadata_csum_seed"],
        size_mib: 96,
        tune: &[],
    },
    Config {
        name: "ubuntu-25.10",
        mkfs: &["-b", "4096", "-O", "orphan_file,metadata_csum_seed"],
        size_mib: 96,
        tune: &["-U", "0c0ffee0-1234-4321-8765-0123456789ab"],
    },
    Config {
        name: "no-metadata-csum",
        mkfs: &["-b", "4096", "-O", "^metadata_csum,uninit_bg"],
        size_mib: 96,
        tune: &[],
    },
    Config {
        name: "no-checksums",
        mkfs: &["-b", "4096", "-O", "^metadata_csum,^uninit_bg"],
        size_mib: 96,
        tune: &[],
    },
    Config {
        name: "32bit",
        mkfs: &["-b", "4096", "-O", "^64bit"],
        size_mib: 96,
        tune: &[],
    },
    Config {
        name: "1k-blocks",
        mkfs: &["-b", "1024"],
        size_mib: 96,
        tune: &[],
    },
    Config {
        name: "2k-blocks",
        mkfs: &["-b", "2048"],
        size_mib: 96,
        tune: &[],
    },
    Config {
        name: "no-flex-bg",
        mkfs: &["-b", "4096", "-O", "^flex_bg", "-g", "8192"],
        size_mib: 96,
        tune: &[],
    },
    Config {
        name: "inode-128",
        mkfs: &["-b", "4096", "-I", "128"],
        size_mib: 96,
        tune: &[],
    },
    Config {
        name: "few-inodes",
        // 12 groups of 8 MiB with 16 inodes each: allocation soon reaches
        // groups still marked INODE_UNINIT/BLOCK_UNINIT.
        mkfs: &["-b", "4096", "-g", "2048", "-N", "192"],
        size_mib: 96,
        tune: &[],
    },
    Config {
        name: "no-dir-index",
        mkfs: &["-b", "4096", "-O", "^dir_index"],
        size_mib: 96,
        tune: &[],
    },
];

pub fn config(name: &str) -> &'static Config {
    CONFIGS
        .iter()
        .find(|c| c.name == name)
        .expect("known config")
}

/// A fresh filesystem image (no partition table) of shape `cfg`.
pub fn mkfs(dir: &Path, cfg: &Config) -> PathBuf {
    let img = dir.join(format!("{}.ext4", cfg.name));
    let _ = std::fs::remove_file(&img);
    run_ok(
        Command::new("mke2fs")
            .args([
                "-q",
                "-F",
                "-t",
                "ext4",
                "-E",
                "lazy_itable_init=1,root_owner=0:0",
            ])
            .args(cfg.mkfs)
            .arg(&img)
            .arg(format!("{}M", cfg.size_mib)),
    );
    if !cfg.tune.is_empty() {
        run_ok(Command::new("tune2fs").args(cfg.tune).arg(&img));
    }
    img
}

pub fn window(img: &Path) -> PartitionWindow {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(img)
        .unwrap();
    let len = file.metadata().unwrap().len();
    PartitionWindow::new(
        Arc::new(file),
        ByteRange::new(ByteOffset(0), ByteLen(len)).unwrap(),
    )
}

pub fn write(img: &Path, ops: &[Op]) -> Result<Summary, WriteError> {
    apply(&window(img), ops, NOW)
}

/// e2fsck -fn must exit 0 and report nothing beyond its pass banners.
pub fn assert_fsck_clean(img: &Path, what: &str) {
    let out = Command::new("e2fsck").arg("-fn").arg(img).output().unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    let noise = |l: &str| {
        l.starts_with("Pass ")
            || l.starts_with("e2fsck ")
            || l.contains(" files (")
            || l.trim().is_empty()
    };
    let problems: Vec<&str> = text.lines().filter(|l| !noise(l)).collect();
    assert!(
        out.status.code() == Some(0) && problems.is_empty(),
        "{what}: e2fsck -fn exit {:?}:\n{text}",
        out.status.code()
    );
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Dir {
        mode: u16,
        uid: u32,
        gid: u32,
    },
    File {
        data: Arc<Vec<u8>>,
        mode: u16,
        uid: u32,
        gid: u32,
    },
    Symlink {
        target: Vec<u8>,
        uid: u32,
        gid: u32,
    },
}

/// The tree we expect under some root, by absolute path.
#[derive(Debug, Default, Clone)]
pub struct Model {
    pub nodes: BTreeMap<String, Node>,
}

pub fn parent(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) => "/",
        Some(i) => &path[..i],
        None => "/",
    }
}

impl Model {
    /// The ops that realise `self` from nothing (parents first).
    pub fn ops(&self) -> Vec<Op> {
        self.nodes.iter().map(|(p, n)| op_for(p, n)).collect()
    }
}

pub fn op_for(path: &str, n: &Node) -> Op {
    match n {
        Node::Dir { mode, uid, gid } => Op::Mkdir {
            path: path.into(),
            meta: Meta {
                mode: *mode,
                uid: *uid,
                gid: *gid,
                mtime: NOW - 100,
            },
            parents: false,
        },
        Node::File {
            data,
            mode,
            uid,
            gid,
        } => Op::WriteFile {
            path: path.into(),
            content: Content::Bytes(data.as_ref().clone()),
            meta: Meta {
                mode: *mode,
                uid: *uid,
                gid: *gid,
                mtime: NOW - 200,
            },
        },
        Node::Symlink { target, uid, gid } => Op::Symlink {
            path: path.into(),
            target: target.clone(),
            meta: Meta {
                mode: 0o777,
                uid: *uid,
                gid: *gid,
                mtime: NOW - 300,
            },
        },
    }
}

/// Deterministic pseudo-random bytes.
pub fn bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// ext4-view reads back every byte, mode, owner and link target of the
/// model, and each modelled directory lists exactly the modelled names.
/// Walks with `read_dir` (one lookup per directory, not per path, which
/// would be quadratic in a 20,000-entry linear directory).
pub fn assert_ext4_view_matches(img: &Path, model: &Model, root: &str) {
    let fs = ext4_view::Ext4::load(Box::new(std::fs::read(img).unwrap())).unwrap();
    let mut seen: BTreeMap<String, ext4_view::Metadata> = BTreeMap::new();
    let root_meta = fs
        .symlink_metadata(root)
        .unwrap_or_else(|e| panic!("{root}: {e}"));
    seen.insert(root.to_string(), root_meta);
    let mut todo = vec![root.to_string()];
    while let Some(dir) = todo.pop() {
        for e in fs
            .read_dir(dir.as_str())
            .unwrap_or_else(|e| panic!("{dir}: {e}"))
        {
            let e = e.unwrap();
            let name = e.file_name().as_str().unwrap().to_string();
            if name == "." || name == ".." {
                continue;
            }
            let path = format!("{}/{name}", dir.trim_end_matches('/'));
            let meta = e.metadata().unwrap_or_else(|err| panic!("{path}: {err}"));
            if meta.is_dir() {
                todo.push(path.clone());
            }
            seen.insert(path, meta);
        }
    }
    seen.remove(root);
    let got: Vec<&String> = seen.keys().collect();
    let want: Vec<&String> = model.nodes.keys().filter(|p| p.as_str() != root).collect();
    assert_eq!(got, want, "ext4-view lists different paths under {root}");
    for (path, node) in &model.nodes {
        let Some(meta) = seen.get(path) else { continue };
        match node {
            Node::Dir { mode, uid, gid } => {
                assert!(meta.is_dir(), "{path} is not a directory");
                assert_eq!(
                    (meta.mode(), meta.uid(), meta.gid()),
                    (*mode, *uid, *gid),
                    "{path}"
                );
            }
            Node::File {
                data,
                mode,
                uid,
                gid,
            } => {
                assert_eq!(
                    (meta.mode(), meta.uid(), meta.gid()),
                    (*mode, *uid, *gid),
                    "{path}"
                );
                assert_eq!(meta.len(), data.len() as u64, "{path}: size");
                if !data.is_empty() {
                    let got = fs.read(path.as_str()).unwrap();
                    assert!(got == **data, "{path}: contents differ");
                }
            }
            Node::Symlink { target, uid, gid } => {
                assert!(meta.is_symlink(), "{path} is not a symlink");
                assert_eq!((meta.uid(), meta.gid()), (*uid, *gid), "{path}");
                let t = fs.read_link(path.as_str()).unwrap();
                assert_eq!(t.as_ref(), target.as_slice(), "{path}: link target");
            }
        }
    }
}

/// `find -printf` over a tree: path, type, mode, owner, size, link target.
fn listing(dir: &Path, special_bits: bool) -> String {
    let out = run_ok(
        Command::new("find")
            .arg(".")
            .args(["-printf", "%p %y %m %U %G %s %l\n"])
            .current_dir(dir),
    );
    let mut lines: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        // Directory sizes differ between ext4 and the host filesystem.
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let mut f: Vec<String> = f.iter().map(|s| s.to_string()).collect();
            if !special_bits && f[2].len() > 3 {
                f[2] = f[2][f[2].len() - 3..].to_string();
            }
            if f[1] == "d" {
                f.truncate(5);
            }
            f.join(" ")
        })
        .collect();
    lines.sort();
    lines.join("\n")
}

/// Writes the model's subtree under `root` into a local directory.
fn materialise(model: &Model, root: &str, out: &Path) {
    std::fs::create_dir_all(out).unwrap();
    for (path, node) in &model.nodes {
        let rel = path.strip_prefix(root).unwrap().trim_start_matches('/');
        let p = out.join(rel);
        match node {
            Node::Dir { .. } => std::fs::create_dir_all(&p).unwrap(),
            Node::File { data, .. } => std::fs::write(&p, data.as_slice()).unwrap(),
            Node::Symlink { target, .. } => {
                use std::os::unix::ffi::OsStrExt;
                std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(target), &p).unwrap()
            }
        }
    }
    // Modes and owners after creation (a 0500 directory would block writes).
    for (path, node) in model.nodes.iter().rev() {
        let rel = path.strip_prefix(root).unwrap().trim_start_matches('/');
        let p = out.join(rel);
        use std::os::unix::fs::PermissionsExt;
        match node {
            Node::Dir { mode, uid, gid } | Node::File { mode, uid, gid, .. } => {
                std::os::unix::fs::chown(&p, Some(*uid), Some(*gid)).unwrap();
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(u32::from(*mode)))
                    .unwrap();
            }
            Node::Symlink { uid, gid, .. } => {
                std::os::unix::fs::lchown(&p, Some(*uid), Some(*gid)).unwrap();
            }
        }
    }
}

/// debugfs `rdump` of `root` gives the same tree as `tmp/want` (the model) (names, types, modes,
/// owners, sizes, link targets and bytes) as the model.
pub fn assert_debugfs_matches(img: &Path, root: &str, tmp: &Path) {
    let want = tmp.join("want");
    let got = tmp.join("got");
    let _ = std::fs::remove_dir_all(&got);
    std::fs::create_dir_all(&got).unwrap();
    let out = run_ok(
        Command::new("debugfs")
            .arg("-R")
            .arg(format!("rdump -p {root} {}", got.display()))
            .arg(img),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("rdump:"), "debugfs rdump complained: {err}");
    let name = root.rsplit('/').next().unwrap();
    let got = got.join(name);
    // rdump drops setuid/setgid bits when it restores modes; ext4-view and
    // the kernel check those.
    assert_eq!(
        listing(&got, false),
        listing(&want, false),
        "debugfs rdump listing differs"
    );
    run_ok(
        Command::new("diff")
            .arg("-r")
            .arg("--no-dereference")
            .arg(&want)
            .arg(&got),
    );
}

/// Whether this machine lets us loop-mount (root, loop devices, ext4).
pub fn can_loop_mount() -> Result<(), String> {
    let uid = run_ok(Command::new("id").arg("-u")).stdout;
    if String::from_utf8_lossy(&uid).trim() != "0" {
        return Err("not root".into());
    }
    if !Path::new("/dev/loop-control").exists() {
        return Err("no /dev/loop-control".into());
    }
    Ok(())
}

/// The kernel mounts the image read-only and `diff -r` plus a listing of
/// modes and owners match the model. Prints why it skipped otherwise.
pub fn assert_kernel_matches(img: &Path, root: &str, tmp: &Path) {
    if let Err(why) = can_loop_mount() {
        eprintln!("skipping the kernel mount check: {why}");
        return;
    }
    let want = tmp.join("want");
    let mnt = tmp.join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let m = Command::new("mount")
        .args(["-t", "ext4", "-o", "ro,loop,noload"])
        .arg(img)
        .arg(&mnt)
        .output()
        .unwrap();
    if !m.status.success() {
        let err = String::from_utf8_lossy(&m.stderr);
        if err.contains("failed to setup loop device") || err.contains("permission denied") {
            eprintln!("skipping the kernel mount check: {}", err.trim());
            return;
        }
        panic!("the kernel refused to mount {}: {err}", img.display());
    }
    let sub = mnt.join(root.trim_start_matches('/'));
    let diff = Command::new("diff")
        .arg("-r")
        .arg("--no-dereference")
        .arg(&want)
        .arg(&sub)
        .output()
        .unwrap();
    let (l1, l2) = (listing(&want, true), listing(&sub, true));
    let _ = Command::new("umount").arg(&mnt).status();
    assert!(
        diff.status.success(),
        "diff -r against the kernel's view:\n{}",
        String::from_utf8_lossy(&diff.stdout)
    );
    assert_eq!(l2, l1, "the kernel's listing differs");
}

/// Every oracle, on one image.
pub fn assert_matches(img: &Path, model: &Model, root: &str, tmp: &Path, what: &str) {
    assert_fsck_clean(img, what);
    if ext4_view_reads(img) {
        assert_ext4_view_matches(img, model, root);
    } else {
        eprintln!(
            "{what}: ext4-view cannot read 128-byte inodes with metadata_csum; e2fsck, debugfs and the kernel judge this one"
        );
    }
    // The expected tree, written out once for debugfs and the kernel; in
    // RAM when /dev/shm exists (20,000 small files).
    let scratch = match tempfile::tempdir_in("/dev/shm") {
        Ok(d) => d,
        Err(_) => tempfile::tempdir_in(tmp).unwrap(),
    };
    let tmp = scratch.path();
    materialise(model, root, &tmp.join("want"));
    assert_debugfs_matches(img, root, tmp);
    assert_kernel_matches(img, root, tmp);
}

/// A copy of the `ubuntu-raspi.img` fixture at `path` with 1.5 GiB of
/// incompressible bytes (pattern `seed`) appended past its partitions, so
/// that a build from it takes long enough to be interrupted or disturbed.
/// Returns the fixture's own size.
pub fn big_base(path: &std::path::Path, seed: u64) -> u64 {
    use std::io::Write;
    // cp keeps the fixture's holes (std::fs::copy would fill them).
    crate::util::run_ok(
        std::process::Command::new("cp")
            .arg(crate::util::fixture("ubuntu-raspi.img"))
            .arg(path),
    );
    let small = std::fs::metadata(path).unwrap().len();
    let mut f = std::fs::OpenOptions::new().append(true).open(path).unwrap();
    let chunk = bytes(64 << 20, seed);
    for _ in 0..24 {
        f.write_all(&chunk).unwrap();
    }
    small
}
