//! Hostile images on the ext4, inspect and build side (issue 12): damaged
//! directories the writer must refuse, special files it must remove, files
//! that claim more bytes than anyone should hold in memory, bases that are
//! outputs, and errors that name what broke. Each image is a fixture copy
//! changed with debugfs (which keeps checksums right) or patched bytes with
//! the checksum recomputed here; e2fsck and debugfs judge the results.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::ext4_support::assert_fsck_clean;
use crate::util::{assert_fails, copy_fixture, hi, hi_ok, our_partition, read_at, run_ok};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The ext4 partition `n` of `img` as e2fsprogs addresses it in place.
fn dev(img: &Path, n: u64) -> String {
    format!("{}?offset={}", img.display(), our_partition(img, n).0)
}

/// Runs debugfs requests (one per line) read-write on `dev`.
fn debugfs_w(dev: &str, requests: &str) {
    use std::io::Write;
    let mut child = Command::new("debugfs")
        .args(["-w", "-f", "-", dev])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("debugfs (e2fsprogs)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(requests.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "debugfs: {out:?}");
}

fn debugfs(dev: &str, request: &str) -> String {
    let out = run_ok(Command::new("debugfs").arg("-R").arg(request).arg(dev));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `e2fsck -fy`: lets e2fsck tidy what debugfs leaves half-done (such as
/// the directory entry type of a node whose mode we changed).
fn e2fsck_fix(dev: &str) {
    let st = Command::new("e2fsck").args(["-fy", dev]).output().unwrap();
    assert!(st.status.code().unwrap_or(8) < 4, "e2fsck -fy: {st:?}");
}

fn sha(p: &Path) -> String {
    let out = run_ok(Command::new("sha256sum").arg(p));
    String::from_utf8_lossy(&out.stdout)[..64].to_string()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A fixture copy whose root filesystem holds a FIFO, a socket and two
/// device nodes in /etc, e2fsck-clean.
fn with_special_files(tmp: &Path) -> PathBuf {
    let img = copy_fixture("ubuntu-raspi.img", tmp);
    let d = dev(&img, 2);
    debugfs_w(
        &d,
        "cd /etc\nmknod fifo p\nmknod sda1 b 8 1\nmknod null c 1 3\nmknod sock p\n\
         sif sock mode 0140755\n",
    );
    e2fsck_fix(&d);
    assert_fsck_clean(Path::new(&d), "the prepared image");
    img
}

#[test]
fn ls_long_shows_fifos_sockets_and_devices_as_coreutils_does() {
    let tmp = tempfile::tempdir().unwrap();
    let img = with_special_files(tmp.path());
    let out = hi_ok(&["ls", "-l", s(&img), "2", "/etc"]);
    let line = |name: &str| {
        out.lines()
            .find(|l| l.ends_with(&format!(" {name}")))
            .unwrap_or_else(|| panic!("no {name} in:\n{out}"))
            .to_string()
    };
    assert!(line("fifo").starts_with("p---------"), "{out}");
    assert!(line("sock").starts_with("srwxr-xr-x"), "{out}");
    assert!(line("null").starts_with("c---------"), "{out}");
    assert!(line("sda1").starts_with("b---------"), "{out}");
    assert!(!out.contains('?'), "{out}");
}

#[test]
fn rm_removes_fifos_sockets_and_device_nodes() {
    let tmp = tempfile::tempdir().unwrap();
    let img = with_special_files(tmp.path());
    let d = dev(&img, 2);
    hi_ok(&[
        "rm",
        s(&img),
        "2",
        "/etc/fifo",
        "/etc/sock",
        "/etc/null",
        "/etc/sda1",
    ]);
    assert_fsck_clean(Path::new(&d), "after rm of special files");
    let ls = debugfs(&d, "ls /etc");
    for name in ["fifo", "sock", "null", "sda1"] {
        assert!(!ls.split_whitespace().any(|w| w == name), "{name}:\n{ls}");
    }
    // And replacing one with a regular file works the same way.
    debugfs_w(&d, "cd /etc\nmknod fifo p\n");
    let src = tmp.path().join("plain");
    std::fs::write(&src, "now a file\n").unwrap();
    hi_ok(&["cp", s(&img), "2", s(&src), "/etc/fifo"]);
    assert_fsck_clean(Path::new(&d), "after cp over a FIFO");
    assert_eq!(hi_ok(&["cat", s(&img), "2", "/etc/fifo"]), "now a file\n");
}

// ---------------------------------------------------------------------------
// #12: damaged directories are refused, with the inode named
// ---------------------------------------------------------------------------

/// crc32c as ext4 computes it: seeded, without the final inversion.
fn crc32c_raw(seed: u32, data: &[u8]) -> u32 {
    !crc32c::crc32c_append(!seed, data)
}

/// The value after `key` on the first line of `text` that starts with it.
fn field<'a>(text: &'a str, key: &str) -> &'a str {
    text.lines()
        .find_map(|l| l.trim_start().strip_prefix(key))
        .unwrap_or_else(|| panic!("no {key:?} in:\n{text}"))
        .split_whitespace()
        .next()
        .unwrap()
}

/// The metadata_csum seed of the ext4 at `dev`: `s_checksum_seed` when
/// the filesystem has one, else crc32c of the UUID.
fn csum_seed(dev: &str) -> u32 {
    let h = String::from_utf8_lossy(&run_ok(Command::new("dumpe2fs").args(["-h", dev])).stdout)
        .into_owned();
    if h.contains("Checksum seed:") {
        return u32::from_str_radix(field(&h, "Checksum seed:").trim_start_matches("0x"), 16)
            .unwrap();
    }
    let hex: String = field(&h, "Filesystem UUID:").replace('-', "");
    let uuid: Vec<u8> = (0..16)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    crc32c_raw(!0, &uuid)
}

/// Edits block `lblk` of the directory at `path` in partition `n` and
/// stores the block's checksum again, so that only the edit is wrong.
/// Returns the directory's inode number.
fn edit_dir_block(
    img: &Path,
    n: u64,
    path: &str,
    lblk: usize,
    edit: impl FnOnce(&mut [u8]),
) -> u32 {
    let d = dev(img, n);
    let stat = debugfs(&d, &format!("stat {path}"));
    let ino: u32 = field(&stat, "Inode:").parse().unwrap();
    let generation: u32 = field(&stat, "Generation:").parse().unwrap();
    let blocks: Vec<u64> = debugfs(&d, &format!("blocks {path}"))
        .split_whitespace()
        .map(|b| b.parse().unwrap())
        .collect();
    let bs = 4096usize;
    let at = our_partition(img, n).0 + blocks[lblk] * bs as u64;
    let mut block = read_at(img, at, bs);
    edit(&mut block);
    let tail = &block[bs - 12..];
    if tail[4..8] == [12, 0, 0, 0xDE] {
        let seed = crc32c_raw(
            crc32c_raw(csum_seed(&d), &ino.to_le_bytes()),
            &generation.to_le_bytes(),
        );
        let c = crc32c_raw(seed, &block[..bs - 12]);
        block[bs - 4..].copy_from_slice(&c.to_le_bytes());
    }
    crate::util::patch(img, at, &block);
    // The block's checksum is right again: e2fsck sees only the edit.
    let fsck = Command::new("e2fsck").args(["-fn", &d]).output().unwrap();
    let text = String::from_utf8_lossy(&fsck.stdout).to_lowercase();
    assert!(!text.contains("checksum"), "{text}");
    ino
}

/// The offset of the live entry named `name` in a directory block.
fn entry_at(block: &[u8], name: &[u8]) -> usize {
    let mut at = 0;
    while at + 8 <= block.len() {
        let rec_len = usize::from(u16::from_le_bytes([block[at + 4], block[at + 5]]));
        let len = usize::from(block[at + 6]);
        if &block[at + 8..at + 8 + len] == name {
            return at;
        }
        assert!(rec_len >= 12, "no entry {name:?}");
        at += rec_len;
    }
    panic!("no entry {:?}", String::from_utf8_lossy(name));
}

/// `cp` of a small file to `dest` in partition 2 of `img`, which must be
/// refused with every one of `needles` and leave the image unchanged.
fn cp_is_refused(img: &Path, dest: &str, needles: &[&str]) {
    let src = img.with_file_name("payload.txt");
    std::fs::write(&src, "payload\n").unwrap();
    let before = sha(img);
    assert_fails(&hi(&["cp", s(img), "2", s(&src), dest]), 1, needles);
    assert_eq!(sha(img), before, "a refused cp changed the image");
}

#[test]
fn a_name_holding_a_slash_refuses_edits_of_its_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let img = copy_fixture("ubuntu-raspi.img", tmp.path());
    // debugfs links "/etc/evil" into the root under exactly that name.
    debugfs_w(&dev(&img, 2), "mknod /etc/evil p\n");
    assert!(debugfs(&dev(&img, 2), "ls -l /").contains("/etc/evil"));
    for dest in ["/new.txt", "/etc/new.txt"] {
        cp_is_refused(&img, dest, &["inode 2", "\"/etc/evil\"", "contains '/'"]);
    }
}

#[test]
fn a_name_holding_a_nul_refuses_edits_of_its_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let img = copy_fixture("ubuntu-raspi.img", tmp.path());
    let ino = edit_dir_block(&img, 2, "/etc", 0, |b| {
        let at = entry_at(b, b"fstab");
        b[at + 8 + 2] = 0;
    });
    cp_is_refused(
        &img,
        "/etc/new.txt",
        &[
            &format!("directory block 0 of inode {ino}"),
            "contains a NUL byte",
        ],
    );
}

#[test]
fn a_dot_pointing_elsewhere_refuses_edits_of_its_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let img = copy_fixture("ubuntu-raspi.img", tmp.path());
    let ino = edit_dir_block(&img, 2, "/etc", 0, |b| {
        b[0..4].copy_from_slice(&2u32.to_le_bytes());
    });
    cp_is_refused(
        &img,
        "/etc/new.txt",
        &[
            &format!("directory block 0 of inode {ino}"),
            &format!("`.` pointing at inode {ino}"),
        ],
    );
}

#[test]
fn a_second_dotdot_refuses_edits_of_its_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let img = copy_fixture("ubuntu-raspi.img", tmp.path());
    let ino = edit_dir_block(&img, 2, "/etc", 0, |b| {
        let at = entry_at(b, b"fstab");
        b[at..at + 4].copy_from_slice(&2u32.to_le_bytes());
        b[at + 6] = 2;
        b[at + 7] = 2;
        b[at + 8..at + 10].copy_from_slice(b"..");
    });
    cp_is_refused(
        &img,
        "/etc/new.txt",
        &[
            &format!("directory block 0 of inode {ino}"),
            "another \"..\"",
        ],
    );
}

#[test]
fn a_dotdot_naming_another_parent_refuses_edits_below_it() {
    let tmp = tempfile::tempdir().unwrap();
    let img = copy_fixture("ubuntu-raspi.img", tmp.path());
    let usr: u32 = field(&debugfs(&dev(&img, 2), "stat /usr"), "Inode:")
        .parse()
        .unwrap();
    let ino = edit_dir_block(&img, 2, "/etc", 0, |b| {
        let at = entry_at(b, b"..");
        b[at..at + 4].copy_from_slice(&usr.to_le_bytes());
    });
    cp_is_refused(
        &img,
        "/etc/new.txt",
        &[
            &format!("directory block 0 of inode {ino}"),
            &format!("`..` points at inode {usr}, but the directory is in inode 2"),
        ],
    );
}

// ---------------------------------------------------------------------------
// build: its helpers (a copy of build.rs's, kept here so that file stays
// other work's)
// ---------------------------------------------------------------------------

use crate::build::profile;

fn build(profile: &Path, args: &[&str]) -> Output {
    crate::util::bin()
        .arg("--profile")
        .arg(profile)
        .arg("build")
        .args(args)
        .output()
        .unwrap()
}

/// Files left in `dir` (hidden partial files included).
fn left_in(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn build_refuses_a_base_whose_directory_has_a_wrong_dot() {
    let tmp = tempfile::tempdir().unwrap();
    let base = copy_fixture("ubuntu-raspi.img", tmp.path());
    let ino = edit_dir_block(&base, 2, "/etc", 0, |b| {
        b[0..4].copy_from_slice(&2u32.to_le_bytes());
    });
    let p = profile(tmp.path(), "pi4-microcloud.yaml", &base);
    let out = tmp.path().join("out");
    let r = build(&p, &["--node", "pi1", "--out", s(&out)]);
    assert_fails(
        &r,
        1,
        &["pi1", &format!("directory block 0 of inode {ino}"), "`.`"],
    );
    assert!(left_in(&out).is_empty(), "left behind: {:?}", left_in(&out));
}

#[test]
fn a_second_ds_token_in_cmdline_txt_does_not_survive_the_build() {
    let tmp = tempfile::tempdir().unwrap();
    let base = copy_fixture("ubuntu-raspi.img", tmp.path());
    let spec = format!("{}@@{}", s(&base), our_partition(&base, 1).0);
    let line =
        "console=tty1 ds=nocloud-net;s=http://10.0.0.1/ root=LABEL=writable ds=ec2 rootwait\n";
    let local = tmp.path().join("cmdline.txt");
    std::fs::write(&local, line).unwrap();
    run_ok(
        Command::new("mcopy")
            .env("MTOOLS_SKIP_CHECK", "1")
            .args(["-o", "-i", &spec])
            .arg(&local)
            .arg("::/cmdline.txt"),
    );
    let p = profile(tmp.path(), "pi4-microcloud.yaml", &base);
    let out = tmp.path().join("out");
    let r = build(&p, &["--node", "pi1", "--out", s(&out)]);
    assert!(r.status.success(), "{}", stderr(&r));
    let img = out.join("pi1.img");
    let got = hi_ok(&["cat", s(&img), "1", "/cmdline.txt"]);
    let ds: Vec<&str> = got
        .split_whitespace()
        .filter(|t| t.starts_with("ds="))
        .collect();
    assert_eq!(ds, ["ds=nocloud"], "{got}");
    assert_eq!(
        got, "console=tty1 ds=nocloud root=LABEL=writable rootwait\n",
        "other tokens must stay as they were"
    );
}

// ---------------------------------------------------------------------------
// #7: sizes nobody should hold in memory; #26: inspect reports what it can
// ---------------------------------------------------------------------------

/// 1 TiB: what a damaged or hostile inode can claim in `i_size`.
const TIB: u64 = 1 << 40;

/// Sets the size of `path` in partition `n` (debugfs keeps the checksum).
fn set_size(img: &Path, n: u64, path: &str, size: u64) {
    let d = dev(img, n);
    debugfs_w(&d, &format!("sif {path} size {size}\n"));
    let stat = debugfs(&d, &format!("stat {path}"));
    assert!(stat.contains(&format!("Size: {size}")), "{stat}");
}

fn inspect_json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "inspect printed no JSON report ({e}):\n{}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

#[test]
fn inspect_refuses_a_1_tib_os_release_and_still_reports_the_rest() {
    let tmp = tempfile::tempdir().unwrap();
    let img = copy_fixture("ubuntu-raspi.img", tmp.path());
    set_size(&img, 2, "/usr/lib/os-release", TIB);
    let out = hi(&["inspect", "--json", s(&img)]);
    // Exit 1, one line naming the file, its size and the limit; never an
    // abort (134) from allocating a terabyte.
    assert_fails(
        &out,
        1,
        &[
            "partition 2",
            "/etc/os-release",
            "1099511627776 bytes",
            "4 MiB limit",
        ],
    );
    let json = inspect_json(&out);
    assert_eq!(json["partitions"].as_array().unwrap().len(), 2);
    assert_eq!(json["layout"]["kind"], "ubuntu-raspi");
    assert!(json["os"].is_null(), "{}", json["os"]);
    assert_eq!(json["cloud_init"]["version"], "25.1.4");
    assert_eq!(json["seed"]["files"].as_array().unwrap().len(), 3);
    let problems = json["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0]["partition"], 2);
    assert_eq!(problems[0]["reading"], "the OS release");
    // The human report says the same.
    let out = hi(&["inspect", s(&img)]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    for want in [
        "system-boot",
        "writable",
        "Ubuntu raspi",
        "Unreadable",
        "1099511627776",
    ] {
        assert!(text.contains(want), "{want}:\n{text}");
    }
}

#[test]
fn inspect_reports_the_table_and_every_readable_part_when_one_etc_file_is_damaged() {
    let tmp = tempfile::tempdir().unwrap();
    let img = copy_fixture("ubuntu-raspi.img", tmp.path());
    // A bad inode checksum: cloud.cfg cannot be read; nothing else is hurt.
    debugfs_w(&dev(&img, 2), "sif /etc/cloud/cloud.cfg checksum 0x1234\n");
    let out = hi(&["inspect", "--json", s(&img)]);
    assert_fails(
        &out,
        1,
        &["partition 2", "reading cloud-init", "/etc/cloud/cloud.cfg"],
    );
    let json = inspect_json(&out);
    assert_eq!(json["table"]["disk_id"], "0x5452a1b3");
    assert_eq!(json["partitions"][1]["filesystem"]["label"], "writable");
    assert_eq!(json["os"]["version_id"], "24.04");
    assert!(json["cloud_init"].is_null());
    assert!(json["boot_config"].as_array().unwrap().len() >= 2);
    assert_eq!(json["problems"][0]["reading"], "cloud-init");
}

#[test]
fn inspect_marks_a_damaged_filesystem_and_reports_the_other_partitions() {
    let tmp = tempfile::tempdir().unwrap();
    let img = copy_fixture("ubuntu-raspi.img", tmp.path());
    // s_volume_name[15]: only the superblock checksum is wrong.
    let (start, _) = our_partition(&img, 2);
    crate::util::patch(&img, start + 1024 + 0x87, b"X");
    let out = hi(&["inspect", "--json", s(&img)]);
    assert_fails(&out, 1, &["partition 2", "s_checksum"]);
    let json = inspect_json(&out);
    assert_eq!(json["partitions"][0]["filesystem"]["label"], "system-boot");
    assert!(json["partitions"][1]["filesystem"].is_null());
    let why = json["partitions"][1]["filesystem_error"].as_str().unwrap();
    assert!(why.contains("s_checksum"), "{why}");
}

#[test]
fn cat_of_a_1_tib_file_streams_instead_of_aborting() {
    let tmp = tempfile::tempdir().unwrap();
    let img = copy_fixture("ubuntu-raspi.img", tmp.path());
    let head = hi_ok(&["cat", s(&img), "2", "/etc/fstab"]);
    set_size(&img, 2, "/etc/fstab", TIB);
    // Take the first MiB, then close the pipe as `| head -c` would.
    let mut child = crate::util::bin()
        .args(["cat", s(&img), "2", "/etc/fstab"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = vec![0u8; 1 << 20];
    use std::io::Read;
    child.stdout.take().unwrap().read_exact(&mut first).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(first.starts_with(head.as_bytes()));
    assert!(
        first[head.len()..].iter().all(|&b| b == 0),
        "a hole reads as zeros"
    );
}

/// The peak resident memory of `cmd` in KiB, from GNU time.
fn max_rss_kib(cmd: &[&str]) -> (Output, u64) {
    let out = Command::new("/usr/bin/time")
        .arg("-v")
        .arg(env!("CARGO_BIN_EXE_homelab-image"))
        .args(cmd)
        .stdout(Stdio::null())
        .output()
        .expect("/usr/bin/time (Debian package time)");
    let err = stderr(&out);
    let kib = field(&err, "Maximum resident set size (kbytes):")
        .parse()
        .unwrap();
    (out, kib)
}

#[test]
fn cat_of_a_3_gib_sparse_file_runs_in_bounded_memory() {
    let tmp = tempfile::tempdir().unwrap();
    let img = copy_fixture("ubuntu-raspi.img", tmp.path());
    set_size(&img, 2, "/etc/fstab", 3 << 30);
    let (out, kib) = max_rss_kib(&["cat", s(&img), "2", "/etc/fstab"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(kib < 64 << 10, "cat of a 3 GiB file peaked at {kib} KiB");
}

#[test]
fn an_armbian_build_refuses_a_1_tib_passwd_without_aborting() {
    let tmp = tempfile::tempdir().unwrap();
    let base = copy_fixture("armbian-rpi.img", tmp.path());
    set_size(&base, 2, "/etc/passwd", TIB);
    let p = profile(tmp.path(), "armbian-rock5b.yaml", &base);
    let out = tmp.path().join("out");
    let r = build(&p, &["--node", "rock1", "--out", s(&out)]);
    assert_fails(
        &r,
        1,
        &["rock1", "/etc/passwd", "1099511627776 bytes", "4 MiB limit"],
    );
    assert!(left_in(&out).is_empty(), "left behind: {:?}", left_in(&out));
}

// ---------------------------------------------------------------------------
// #8: a base that is an output; #20: a base that shrinks while it is read
// ---------------------------------------------------------------------------

#[test]
fn build_refuses_a_base_that_is_its_own_output() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    let base = out.join("pi1.img");
    run_ok(
        Command::new("cp")
            .arg("--sparse=always")
            .arg(crate::util::fixture("ubuntu-raspi.img"))
            .arg(&base),
    );
    let before = sha(&base);
    let p = profile(tmp.path(), "pi4-microcloud.yaml", &base);
    let r = build(&p, &["--node", "pi1", "--out", s(&out)]);
    assert_fails(
        &r,
        1,
        &[
            "node pi1",
            "base image",
            s(&base),
            "which this build writes",
        ],
    );
    assert_eq!(sha(&base), before, "the base changed");
    assert_eq!(left_in(&out), ["pi1.img"]);
}

#[test]
fn build_refuses_a_base_hard_linked_to_an_output() {
    let tmp = tempfile::tempdir().unwrap();
    let base = copy_fixture("ubuntu-raspi.img", tmp.path());
    let out = tmp.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::hard_link(&base, out.join("pi2.img")).unwrap();
    let before = sha(&base);
    let p = profile(tmp.path(), "pi4-microcloud.yaml", &base);
    let r = build(&p, &["--all", "--out", s(&out)]);
    assert_fails(
        &r,
        1,
        &[
            "base image",
            s(&base),
            "same file",
            "pi2.img",
            "which this build writes",
        ],
    );
    assert_eq!(sha(&base), before, "the base changed");
    assert_eq!(left_in(&out), ["pi2.img"]);
}

#[test]
fn a_base_that_shrinks_during_the_build_is_named_as_the_cause() {
    let tmp = tempfile::tempdir().unwrap();
    // The fixture with 1.5 GiB of data after its partitions, so that the
    // build is still reading when the base is cut back to the fixture.
    let base = tmp.path().join("big-base.img");
    let small = crate::ext4_support::big_base(&base, 9);
    let big = std::fs::metadata(&base).unwrap().len();
    let p = profile(tmp.path(), "pi4-microcloud.yaml", &base);
    let out = tmp.path().join("out");
    let child = crate::util::bin()
        .arg("--profile")
        .arg(&p)
        .args(["build", "--node", "pi1", "--out", s(&out)])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the image is being written, then cut the base back.
    // The partial image is `.pi1.img.PID.partial`.
    let partial = out.join(format!(".pi1.img.{}.partial", child.id()));
    let t0 = std::time::Instant::now();
    while !partial.exists() {
        assert!(
            t0.elapsed().as_secs() < 60,
            "the build never started writing"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    std::fs::OpenOptions::new()
        .write(true)
        .open(&base)
        .unwrap()
        .set_len(small)
        .unwrap();
    let r = child.wait_with_output().unwrap();
    assert_fails(
        &r,
        1,
        &[
            "node pi1",
            s(&base),
            "changed size while it was being read",
            &format!("{big} bytes when the build started, {small} now"),
        ],
    );
    assert!(
        !stderr(&r).contains("failed to fill whole buffer"),
        "{}",
        stderr(&r)
    );
    assert!(left_in(&out).is_empty(), "left behind: {:?}", left_in(&out));
}

// ---------------------------------------------------------------------------
// #15: build says why a filesystem cannot be read
// ---------------------------------------------------------------------------

#[test]
fn build_names_the_broken_field_of_a_damaged_superblock_or_boot_sector() {
    let tmp = tempfile::tempdir().unwrap();
    // ext4: s_volume_name[15] changed, so s_checksum no longer matches.
    let ext = copy_fixture("ubuntu-raspi.img", tmp.path());
    let (root, _) = our_partition(&ext, 2);
    let (boot, _) = our_partition(&ext, 1);
    crate::util::patch(&ext, root + 1024 + 0x87, b"X");
    // FAT: a copy whose boot sector says 0 bytes per sector.
    let fat = tmp.path().join("fat.img");
    std::fs::copy(crate::util::fixture("ubuntu-raspi.img"), &fat).unwrap();
    crate::util::patch(&fat, boot + 11, &[0, 0]);
    for (base, part, needle) in [
        (&ext, "partition 2", "s_checksum"),
        (&fat, "partition 1", "FAT boot sector is corrupt"),
    ] {
        let dir = tmp.path().join(part);
        std::fs::create_dir_all(&dir).unwrap();
        let p = profile(&dir, "pi4-microcloud.yaml", base);
        let out = dir.join("out");
        let r = build(&p, &["--node", "pi1", "--out", s(&out)]);
        assert_fails(&r, 1, &["node pi1", s(base), part, needle]);
        let err = stderr(&r);
        assert!(
            !err.contains("not an image layout") && !err.contains("no boot FAT partition"),
            "{err}"
        );
        assert!(left_in(&out).is_empty(), "left behind: {:?}", left_in(&out));
    }
}

// ---------------------------------------------------------------------------
// #20: messages that name things instead of printing internals
// ---------------------------------------------------------------------------

#[test]
fn a_casefold_filesystem_is_refused_by_feature_name() {
    let tmp = tempfile::tempdir().unwrap();
    let img = copy_fixture("ubuntu-raspi.img", tmp.path());
    debugfs_w(&dev(&img, 2), "feature casefold\n");
    for args in [
        vec!["ls", s(&img), "2", "/"],
        vec!["cat", s(&img), "writable", "/etc/hostname"],
        vec!["inspect", s(&img)],
    ] {
        let out = hi(&args);
        assert_fails(&out, 1, &["partition 2", "casefold"]);
        assert!(!stderr(&out).contains("0x20000"), "{}", stderr(&out));
    }
}

#[test]
fn a_journal_the_reader_cannot_replay_is_named_by_its_features() {
    let tmp = tempfile::tempdir().unwrap();
    let img = copy_fixture("ubuntu-raspi.img", tmp.path());
    // The fixture's journal has no features; needs_recovery makes the
    // reader replay it, which it can only do for 64-bit, v3-checksummed ones.
    debugfs_w(&dev(&img, 2), "feature needs_recovery\n");
    let out = hi(&["ls", s(&img), "2", "/etc"]);
    assert_fails(
        &out,
        1,
        &[
            "partition 2",
            "journal needs recovery",
            "lacks journal_64bit, journal_checksum_v3",
            "e2fsck -fy",
        ],
    );
    assert!(!stderr(&out).contains(": 18"), "{}", stderr(&out));
}

#[test]
fn a_seek_out_of_the_partition_is_told_once_in_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let img = copy_fixture("ubuntu-raspi.img", tmp.path());
    // BPB_RootClus far past the end of the 40 MiB FAT32 partition.
    let (boot, _) = our_partition(&img, 1);
    crate::util::patch(&img, boot + 44, &0x0fff_ff00u32.to_le_bytes());
    let out = hi(&["ls", s(&img), "1", "/"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(!err.contains("Start("), "{err}");
    assert!(err.matches("leaves the partition").count() <= 1, "{err}");
    assert!(!err.contains(": :"), "{err}");
}
