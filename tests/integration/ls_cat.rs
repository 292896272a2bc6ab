//! `ls` and `cat` agree with mtools (`mdir`, `mtype`) on FAT and with
//! `debugfs` on ext4.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::{extract_partition, fixture, hi, hi_ok, our_partition, run_ok, stdout_of};

fn mtools_spec(image: &Path, n: u64) -> String {
    let (start, _) = our_partition(image, n);
    format!("{}@@{start}", image.display())
}

/// Names in a FAT directory according to `mdir -b` (directories end in /).
fn mdir_names(image: &Path, n: u64, dir: &str) -> Vec<String> {
    let out = stdout_of(
        Command::new("mdir")
            .env("MTOOLS_SKIP_CHECK", "1")
            .args(["-b", "-i", &mtools_spec(image, n)])
            .arg(format!("::{dir}")),
    );
    let prefix = format!("::{}/", dir.trim_end_matches('/'));
    let mut names: Vec<String> = out
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .filter(|rest| {
            let bare = rest.trim_end_matches('/');
            !bare.is_empty() && !bare.contains('/')
        })
        .map(str::to_string)
        .collect();
    names.sort();
    names
}

fn our_names(image: &Path, part: &str, dir: &str) -> Vec<String> {
    let mut names: Vec<String> = hi_ok(&["ls", image.to_str().unwrap(), part, dir])
        .lines()
        .map(|l| l.split(" -> ").next().unwrap().to_string())
        .collect();
    names.sort();
    names
}

#[test]
fn fat_listings_match_mdir() {
    for (name, dirs) in [
        ("ubuntu-raspi.img", vec!["/", "/overlays"]),
        ("ubuntu-raspi-2604.img", vec!["/", "/current"]),
        ("armbian-rpi.img", vec!["/"]),
        ("mbr-logical.img", vec!["/"]),
    ] {
        let image = fixture(name);
        for dir in dirs {
            let theirs = mdir_names(&image, 1, dir);
            assert!(!theirs.is_empty(), "{name}:{dir} is empty in mdir");
            assert_eq!(our_names(&image, "1", dir), theirs, "{name}:{dir}");
        }
    }
}

#[test]
fn fat_files_match_mtype_byte_for_byte() {
    let image = fixture("ubuntu-raspi.img");
    let spec = mtools_spec(&image, 1);
    for path in [
        "cmdline.txt",
        "config.txt",
        "user-data",
        "meta-data",
        "network-config",
        "vmlinuz",
    ] {
        let theirs = run_ok(
            Command::new("mtype")
                .env("MTOOLS_SKIP_CHECK", "1")
                .args(["-i", &spec])
                .arg(format!("::/{path}")),
        )
        .stdout;
        // By label and by number, with and without a leading slash.
        for (part, p) in [("system-boot", format!("/{path}")), ("1", path.to_string())] {
            let out = hi(&["cat", image.to_str().unwrap(), part, &p]);
            assert!(
                out.status.success(),
                "{path}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert_eq!(out.stdout, theirs, "{path} differs from mtype");
        }
    }
}

/// One ext4 partition extracted for debugfs.
struct Ext4Part {
    _tmp: tempfile::TempDir,
    fs: PathBuf,
}

fn ext4_part(image: &Path, n: u64) -> Ext4Part {
    let tmp = tempfile::tempdir().unwrap();
    let (start, len) = our_partition(image, n);
    let fs = tmp.path().join("p.ext4");
    extract_partition(image, start, len, &fs);
    Ext4Part { _tmp: tmp, fs }
}

fn debugfs(fs: &Path, request: &str) -> Vec<u8> {
    run_ok(Command::new("debugfs").arg("-R").arg(request).arg(fs)).stdout
}

/// `debugfs ls -p` → name → (mode, uid, gid, size).
fn debugfs_ls(fs: &Path, dir: &str) -> BTreeMap<String, (u32, u32, u32, String)> {
    let out = String::from_utf8(debugfs(fs, &format!("ls -p {dir}"))).unwrap();
    out.lines()
        .filter_map(|l| {
            // /inode/mode/uid/gid/name/size/
            let f: Vec<&str> = l.split('/').collect();
            if f.len() < 7 || f[5] == "." || f[5] == ".." || f[5].is_empty() {
                return None;
            }
            let mode = u32::from_str_radix(f[2], 8).ok()?;
            Some((
                f[5].to_string(),
                (
                    mode,
                    f[3].parse().ok()?,
                    f[4].parse().ok()?,
                    f[6].to_string(),
                ),
            ))
        })
        .collect()
}

#[test]
fn ext4_listings_match_debugfs() {
    for (name, part, dirs) in [
        (
            "ubuntu-raspi.img",
            "writable",
            vec!["/", "/etc", "/usr/share/doc/many", "/etc/cloud/cloud.cfg.d"],
        ),
        (
            "armbian-single-gpt.img",
            "1",
            vec!["/", "/boot", "/etc", "/root"],
        ),
        ("mbr-logical.img", "5", vec!["/"]),
    ] {
        let image = fixture(name);
        let number = hi_ok(&["inspect", "--json", image.to_str().unwrap()]);
        let json: serde_json::Value = serde_json::from_str(&number).unwrap();
        let n = json["partitions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| {
                p["number"].as_u64().map(|n| n.to_string()).as_deref() == Some(part)
                    || p["filesystem"]["label"] == part
            })
            .unwrap()["number"]
            .as_u64()
            .unwrap();
        let ext = ext4_part(&image, n);
        for dir in dirs {
            let theirs = debugfs_ls(&ext.fs, dir);
            assert!(!theirs.is_empty(), "{name}:{dir}: debugfs lists nothing");
            let long = hi_ok(&["ls", "-l", image.to_str().unwrap(), part, dir]);
            let mut ours = BTreeMap::new();
            for line in long.lines() {
                // kind+mode uid gid size date time name[/| -> target]
                let f: Vec<&str> = line.split_whitespace().collect();
                let name = f[6].trim_end_matches('/').to_string();
                ours.insert(
                    name,
                    (
                        f[0].to_string(),
                        f[1].parse::<u32>().unwrap(),
                        f[2].parse::<u32>().unwrap(),
                        f[3].to_string(),
                    ),
                );
            }
            assert_eq!(
                ours.keys().collect::<Vec<_>>(),
                theirs.keys().collect::<Vec<_>>(),
                "{name}:{dir} names"
            );
            for (entry, (mode, uid, gid, size)) in &theirs {
                let (lsmode, ouid, ogid, osize) = &ours[entry];
                assert_eq!(
                    lsmode,
                    &unix_mode_string(*mode),
                    "{name}:{dir}/{entry} mode"
                );
                assert_eq!((ouid, ogid), (uid, gid), "{name}:{dir}/{entry} owner");
                if mode & 0o170000 == 0o100000 {
                    assert_eq!(osize, size, "{name}:{dir}/{entry} size");
                }
            }
        }
    }
}

/// `040755` → `drwxr-xr-x`.
fn unix_mode_string(mode: u32) -> String {
    let kind = match mode & 0o170000 {
        0o040000 => 'd',
        0o120000 => 'l',
        0o100000 => '-',
        _ => '?',
    };
    let mut s = String::from(kind);
    for (shift, special, set, unset) in [
        (6, 0o4000, 's', 'S'),
        (3, 0o2000, 's', 'S'),
        (0, 0o1000, 't', 'T'),
    ] {
        let b = (mode >> shift) & 7;
        s.push(if b & 4 != 0 { 'r' } else { '-' });
        s.push(if b & 2 != 0 { 'w' } else { '-' });
        s.push(match (mode & special != 0, b & 1 != 0) {
            (true, true) => set,
            (true, false) => unset,
            (false, true) => 'x',
            (false, false) => '-',
        });
    }
    s
}

#[test]
fn ext4_files_match_debugfs_cat() {
    let image = fixture("ubuntu-raspi.img");
    let ext = ext4_part(&image, 2);
    for path in [
        "/etc/hostname",
        "/etc/fstab",
        "/usr/lib/os-release",
        "/etc/cloud/cloud.cfg.d/99-fake_cloud.cfg",
        "/usr/lib/python3/dist-packages/cloudinit/version.py",
    ] {
        let theirs = debugfs(&ext.fs, &format!("cat {path}"));
        let out = hi(&["cat", image.to_str().unwrap(), "writable", path]);
        assert!(
            out.status.success(),
            "{path}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.stdout, theirs, "{path}");
    }
    // Through a symlink we read the target's bytes, as the kernel would.
    let target = debugfs(&ext.fs, "cat /usr/lib/os-release");
    let out = hi(&["cat", image.to_str().unwrap(), "2", "/etc/os-release"]);
    assert_eq!(out.stdout, target);
}

#[test]
fn symlink_targets_match_debugfs() {
    let image = fixture("ubuntu-raspi.img");
    let ext = ext4_part(&image, 2);
    let listing = hi_ok(&["ls", "-l", image.to_str().unwrap(), "writable", "/etc"]);
    let mut links = 0;
    for line in listing.lines().filter(|l| l.starts_with('l')) {
        let (left, target) = line.split_once(" -> ").unwrap();
        let name = left.split_whitespace().last().unwrap();
        let stat = String::from_utf8(debugfs(&ext.fs, &format!("stat /etc/{name}"))).unwrap();
        assert!(
            stat.contains(&format!("Fast link dest: \"{target}\"")) || stat.contains("Size: "),
            "/etc/{name}: {stat}"
        );
        let link = debugfs_readlink(&ext.fs, &format!("/etc/{name}"));
        assert_eq!(link, target, "/etc/{name}");
        links += 1;
    }
    assert!(links >= 1, "no symlinks in /etc:\n{listing}");
}

/// The target of a symlink, fast (inline) or slow (in a block), via debugfs.
fn debugfs_readlink(fs: &Path, path: &str) -> String {
    let stat = String::from_utf8(debugfs(fs, &format!("stat {path}"))).unwrap();
    if let Some(rest) = stat.split("Fast link dest: \"").nth(1) {
        return rest.split('"').next().unwrap().to_string();
    }
    // A slow symlink's target is its data block.
    String::from_utf8(debugfs(fs, &format!("cat {path}"))).unwrap()
}

#[test]
fn long_and_short_symlinks_are_both_read() {
    let image = fixture("ubuntu-raspi.img");
    let ext = ext4_part(&image, 2);
    let json: serde_json::Value =
        serde_json::from_str(&hi_ok(&["inspect", "--json", image.to_str().unwrap()])).unwrap();
    assert_eq!(json["layout"]["root"], 2);
    // Walk the whole root for symlinks and compare each target.
    let mut short = 0;
    let mut long = 0;
    let mut stack = vec!["/".to_string()];
    while let Some(dir) = stack.pop() {
        for line in hi_ok(&["ls", "-l", image.to_str().unwrap(), "2", &dir]).lines() {
            let f: Vec<&str> = line.split_whitespace().collect();
            let child = format!(
                "{}/{}",
                dir.trim_end_matches('/'),
                f[6].trim_end_matches('/')
            );
            if line.starts_with('d') {
                stack.push(child);
            } else if line.starts_with('l') {
                let target = line.split_once(" -> ").unwrap().1;
                assert_eq!(debugfs_readlink(&ext.fs, &child), target, "{child}");
                if target.len() < 60 {
                    short += 1
                } else {
                    long += 1
                }
            }
        }
    }
    assert!(
        short >= 1 && long >= 1,
        "want both kinds of symlink: {short} short, {long} long"
    );
}

#[test]
fn ls_of_a_file_shows_the_file_like_ls() {
    let image = fixture("ubuntu-raspi.img");
    let img = image.to_str().unwrap();
    // FAT names match case-insensitively, as the firmware and Linux do.
    let fat = hi_ok(&["ls", "-l", img, "1", "CMDLINE.TXT"]);
    assert_eq!(fat.lines().count(), 1, "{fat}");
    assert!(fat.trim_end().ends_with(" cmdline.txt"), "{fat}");
    let ext = hi_ok(&["ls", "-l", img, "2", "/etc/os-release"]);
    assert!(ext.starts_with("lrwxrwxrwx"), "{ext}");
    assert!(
        ext.trim_end()
            .ends_with("os-release -> ../usr/lib/os-release"),
        "{ext}"
    );
    let ext = ext4_part(&image, 2);
    let stat = String::from_utf8(debugfs(&ext.fs, "stat /etc/hostname")).unwrap();
    let size = stat
        .split("Size: ")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap();
    let ours = hi_ok(&["ls", "-l", img, "2", "/etc/hostname"]);
    assert_eq!(
        ours.split_whitespace().nth(3),
        Some(size),
        "{ours} vs {stat}"
    );
}
