//! `cp` and `rm` on real image layouts, judged by debugfs, e2fsck, mtools
//! and fsck.fat.

use std::path::Path;
use std::process::Command;

use crate::ext4_support::assert_fsck_clean;
use crate::util::{
    assert_fails, copy_fixture, extract_partition, hi, hi_ok, our_partition, run_ok,
};

/// The image's ext4 partition extracted for the oracles.
fn ext4_of(img: &Path, n: u64, tmp: &Path) -> std::path::PathBuf {
    let (start, len) = our_partition(img, n);
    let out = tmp.join(format!("p{n}.ext4"));
    extract_partition(img, start, len, &out);
    out
}

fn debugfs(fs: &Path, req: &str) -> String {
    String::from_utf8(run_ok(Command::new("debugfs").arg("-R").arg(req).arg(fs)).stdout).unwrap()
}

fn local_tree(tmp: &Path) -> std::path::PathBuf {
    let src = tmp.join("conf");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("a.conf"), "alpha\n").unwrap();
    std::fs::write(src.join("sub/b.conf"), vec![b'b'; 70_000]).unwrap();
    std::os::unix::fs::symlink("a.conf", src.join("link")).unwrap();
    src
}

#[test]
fn cp_r_to_a_missing_path_makes_that_path_and_into_a_directory_keeps_the_name() {
    let tmp = tempfile::tempdir().unwrap();
    let img = copy_fixture("ubuntu-raspi.img", tmp.path());
    let src = local_tree(tmp.path());
    let i = img.to_str().unwrap();
    hi_ok(&[
        "cp",
        "-r",
        i,
        "writable",
        src.to_str().unwrap(),
        "/etc/homelab",
    ]);
    hi_ok(&[
        "cp",
        "-r",
        "--owner",
        "1000:1000",
        i,
        "2",
        src.to_str().unwrap(),
        "/root",
    ]);
    hi_ok(&[
        "cp",
        "--mode",
        "600",
        i,
        "writable",
        src.join("a.conf").to_str().unwrap(),
        "/etc/secret",
    ]);
    let fs = ext4_of(&img, 2, tmp.path());
    assert_fsck_clean(&fs, "after cp");
    assert_eq!(debugfs(&fs, "cat /etc/homelab/a.conf"), "alpha\n");
    assert_eq!(debugfs(&fs, "cat /etc/homelab/sub/b.conf").len(), 70_000);
    assert!(debugfs(&fs, "stat /etc/homelab/link").contains("Fast link dest: \"a.conf\""));
    let st = debugfs(&fs, "stat /root/conf/sub/b.conf");
    assert!(st.contains("User:  1000   Group:  1000"), "{st}");
    let st = debugfs(&fs, "stat /etc/secret");
    assert!(
        st.contains("Mode:  0600") && st.contains("User:     0"),
        "{st}"
    );
    // Our own reader agrees.
    assert_eq!(
        hi_ok(&["cat", i, "writable", "/root/conf/a.conf"]),
        "alpha\n"
    );
}

#[test]
fn cp_replaces_a_file_in_place_and_rm_removes_it() {
    let tmp = tempfile::tempdir().unwrap();
    let img = copy_fixture("ubuntu-raspi.img", tmp.path());
    let i = img.to_str().unwrap();
    let f = tmp.path().join("hostname");
    std::fs::write(&f, "pi9\n").unwrap();
    let before = debugfs(&ext4_of(&img, 2, tmp.path()), "stat /etc/hostname");
    let ino_of = |s: &str| s.split_whitespace().nth(1).unwrap().to_string();
    hi_ok(&["cp", i, "writable", f.to_str().unwrap(), "/etc/hostname"]);
    let fs = ext4_of(&img, 2, tmp.path());
    assert_eq!(debugfs(&fs, "cat /etc/hostname"), "pi9\n");
    assert_eq!(
        ino_of(&debugfs(&fs, "stat /etc/hostname")),
        ino_of(&before),
        "the inode is kept"
    );
    hi_ok(&["rm", i, "writable", "/etc/hostname"]);
    let fs = ext4_of(&img, 2, tmp.path());
    assert_fsck_clean(&fs, "after rm");
    assert_fails(
        &hi(&["cat", i, "writable", "/etc/hostname"]),
        1,
        &["/etc/hostname"],
    );
    assert_fails(
        &hi(&["rm", i, "writable", "/etc/hostname"]),
        1,
        &["/etc/hostname: no such file"],
    );
    hi_ok(&["rm", "-f", i, "writable", "/etc/hostname"]);
    assert_fails(
        &hi(&["rm", i, "writable", "/etc"]),
        1,
        &["/etc: is a directory"],
    );
}

#[test]
fn cp_into_fat_writes_files_that_fsck_fat_accepts() {
    let tmp = tempfile::tempdir().unwrap();
    let img = copy_fixture("ubuntu-raspi.img", tmp.path());
    let i = img.to_str().unwrap();
    let f = tmp.path().join("user-data");
    std::fs::write(&f, "#cloud-config\nhostname: pi7\n").unwrap();
    hi_ok(&["cp", i, "system-boot", f.to_str().unwrap(), "/"]);
    assert_eq!(
        hi_ok(&["cat", i, "system-boot", "/user-data"]),
        "#cloud-config\nhostname: pi7\n"
    );
    let (start, len) = our_partition(&img, 1);
    let fat = tmp.path().join("p1.fat");
    extract_partition(&img, start, len, &fat);
    run_ok(Command::new("fsck.fat").arg("-n").arg(&fat));
    let src = local_tree(tmp.path());
    assert_fails(
        &hi(&[
            "cp",
            "-r",
            i,
            "system-boot",
            src.to_str().unwrap(),
            "/newdir",
        ]),
        1,
        &["creating directories on FAT is not supported"],
    );
    assert_fails(
        &hi(&["cp", "--owner", "1:1", i, "1", f.to_str().unwrap(), "/x"]),
        1,
        &["FAT has no owners or modes"],
    );
}

#[test]
fn cp_refusals_name_the_problem_and_change_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let img = copy_fixture("ubuntu-raspi.img", tmp.path());
    let i = img.to_str().unwrap();
    let src = local_tree(tmp.path());
    let sum = || run_ok(Command::new("sha256sum").arg(&img)).stdout;
    let before = sum();
    assert_fails(
        &hi(&["cp", i, "writable", src.to_str().unwrap(), "/x"]),
        1,
        &["is a directory (use -r"],
    );
    assert_fails(
        &hi(&["cp", i, "writable", "/nonexistent-src", "/x"]),
        1,
        &["/nonexistent-src: cannot read it"],
    );
    assert_fails(
        &hi(&[
            "cp",
            i,
            "writable",
            src.join("a.conf").to_str().unwrap(),
            "relative",
        ]),
        1,
        &["absolute"],
    );
    assert_fails(
        &hi(&[
            "cp",
            i,
            "writable",
            src.join("a.conf").to_str().unwrap(),
            "/etc/hostname/x",
        ]),
        1,
        &["not a directory"],
    );
    assert_fails(
        &hi(&["cp", "--mode", "999", i, "2", "/a", "/b"]),
        2,
        &["octal"],
    );
    assert_fails(
        &hi(&["cp", "--owner", "root:root", i, "2", "/a", "/b"]),
        2,
        &["numeric"],
    );
    // More than the filesystem holds.
    let big = tmp.path().join("big");
    let f = std::fs::File::create(&big).unwrap();
    f.set_len(4 << 30).unwrap();
    assert_fails(
        &hi(&["cp", i, "writable", big.to_str().unwrap(), "/big"]),
        1,
        &["not enough free blocks"],
    );
    assert_eq!(sum(), before, "a refused cp changed the image");
}

#[test]
fn rm_on_fat_removes_files_checks_every_path_first_and_fsck_fat_agrees() {
    let tmp = tempfile::tempdir().unwrap();
    let img = copy_fixture("ubuntu-raspi.img", tmp.path());
    let i = img.to_str().unwrap();
    let sum = || run_ok(Command::new("sha256sum").arg(&img)).stdout;
    let before = sum();
    assert_fails(
        &hi(&["rm", i, "system-boot", "/user-data", "/nope"]),
        1,
        &["partition 1: /nope: no such file or directory"],
    );
    assert_fails(
        &hi(&["rm", i, "system-boot", "/user-data", "/overlays"]),
        1,
        &["/overlays: is a directory"],
    );
    assert_eq!(sum(), before, "a refused rm changed the image");
    hi_ok(&["rm", i, "system-boot", "/user-data", "/meta-data"]);
    hi_ok(&["rm", "-f", i, "1", "/network-config", "/nope"]);
    let (start, len) = our_partition(&img, 1);
    let fat = tmp.path().join("p1.fat");
    extract_partition(&img, start, len, &fat);
    run_ok(Command::new("fsck.fat").arg("-n").arg(&fat));
    let listing = String::from_utf8(
        run_ok(
            Command::new("mdir")
                .arg("-b")
                .arg("-i")
                .arg(&fat)
                .arg("::/"),
        )
        .stdout,
    )
    .unwrap();
    for gone in ["user-data", "meta-data", "network-config"] {
        assert!(!listing.contains(gone), "{gone} still listed:\n{listing}");
    }
    assert!(listing.contains("cmdline.txt"), "{listing}");
}

#[test]
fn cp_r_of_src_dot_copies_the_contents_like_gnu_cp() {
    let tmp = tempfile::tempdir().unwrap();
    let img = copy_fixture("ubuntu-raspi.img", tmp.path());
    let i = img.to_str().unwrap();
    let src = local_tree(tmp.path());
    let contents = format!("{}/.", src.display());
    // Into an existing directory: its contents land there, no DEST/conf.
    let etc_before = debugfs(&ext4_of(&img, 2, tmp.path()), "stat /etc");
    hi_ok(&["cp", "-r", i, "writable", &contents, "/etc"]);
    // Into a missing one: DEST becomes the copy.
    hi_ok(&["cp", "-r", i, "writable", &contents, "/opt-conf"]);
    let fs = ext4_of(&img, 2, tmp.path());
    assert_fsck_clean(&fs, "after cp -r SRC/.");
    assert_eq!(debugfs(&fs, "cat /etc/a.conf"), "alpha\n");
    assert_eq!(debugfs(&fs, "cat /etc/sub/b.conf").len(), 70_000);
    let conf = Command::new("debugfs")
        .args(["-R", "stat /etc/conf"])
        .arg(&fs)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&conf.stderr).contains("File not found"),
        "a /etc/conf directory was made"
    );
    let mode = |st: &str| {
        st.lines()
            .find(|l| l.contains("Mode:"))
            .unwrap()
            .to_string()
    };
    assert_eq!(
        mode(&debugfs(&fs, "stat /etc")),
        mode(&etc_before),
        "the existing directory's mode changed"
    );
    assert_eq!(debugfs(&fs, "cat /opt-conf/a.conf"), "alpha\n");
    // FAT: files of a directory's contents into an existing directory.
    let flat = tmp.path().join("flat");
    std::fs::create_dir(&flat).unwrap();
    std::fs::write(flat.join("x.dtbo"), "x").unwrap();
    hi_ok(&[
        "cp",
        "-r",
        i,
        "1",
        &format!("{}/./", flat.display()),
        "/overlays",
    ]);
    assert_eq!(hi_ok(&["cat", i, "1", "/overlays/x.dtbo"]), "x");
    assert_fails(
        &hi(&["ls", i, "1", "/overlays/flat"]),
        1,
        &["/overlays/flat"],
    );
}

#[test]
fn a_trailing_slash_on_a_file_is_not_a_directory_for_cp_and_rm() {
    let tmp = tempfile::tempdir().unwrap();
    let img = copy_fixture("ubuntu-raspi.img", tmp.path());
    let i = img.to_str().unwrap();
    let sum = || run_ok(Command::new("sha256sum").arg(&img)).stdout;
    let before = sum();
    let f = tmp.path().join("f.txt");
    std::fs::write(&f, "f\n").unwrap();
    let f = f.to_str().unwrap();
    for (part, file) in [("writable", "/etc/hostname"), ("system-boot", "/user-data")] {
        let slashed = format!("{file}/");
        assert_fails(
            &hi(&["rm", i, part, &slashed]),
            1,
            &[&format!("{slashed}: not a directory")],
        );
        assert_fails(
            &hi(&["rm", "-f", i, part, &slashed]),
            1,
            &[&format!("{slashed}: not a directory")],
        );
        assert_fails(
            &hi(&["cp", i, part, f, &slashed]),
            1,
            &[&format!("{slashed}: not a directory")],
        );
        assert_fails(
            &hi(&["cp", i, part, f, "/no-such-dir/"]),
            1,
            &["/no-such-dir/: not a directory"],
        );
        assert_fails(
            &hi(&["cp", i, part, &format!("{f}/"), "/x"]),
            1,
            &["f.txt/: cannot read it", "Not a directory"],
        );
        // A missing path with a slash is no error under -f, as for rm(1).
        hi_ok(&["rm", "-f", i, part, "/no-such-file/"]);
    }
    assert_eq!(sum(), before, "a refused cp or rm changed the image");
}
