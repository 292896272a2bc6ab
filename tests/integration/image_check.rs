//! The profile meets the image (issue 11 §3, §4): `build`, `build
//! --dry-run`, `check` and `render` read the base image and refuse an
//! `image.os` it does not match; profile rules a node would otherwise fail
//! at boot (unknown time zones and keyboard layouts, nobody able to log in,
//! OVN ranges over used addresses, `/dev/sdX` disks, a missing image
//! file); uids taken from the image's free ones; a damaged FAT reported as
//! such; the image's NTP client pinned; `/snap/bin` on the first boot's
//! PATH. Judged by debugfs, e2fsck, `cloud-init schema` and bash.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::ext4_support::assert_fsck_clean;
use crate::util::{
    assert_fails, bin, copy_fixture, extract_partition, fixture, our_partition, patch, run_ok,
    sfdisk_json,
};

/// A copy of an example profile in `dir` with every node's base image set
/// to `os` and `base`.
fn profile(dir: &Path, example: &str, os: &str, base: &Path) -> PathBuf {
    crate::util::example_profile(dir, example, Some(os), base)
}

fn write_profile(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join("homelab.yaml");
    std::fs::write(&p, text).unwrap();
    p
}

/// `homelab-image --profile P ARGS` with an empty cache of its own.
fn hi_p(profile: &Path, args: &[&str]) -> Output {
    let cache = profile.parent().unwrap().join("cache");
    bin()
        .env("HOMELAB_CACHE_DIR", &cache)
        .arg("--profile")
        .arg(profile)
        .args(args)
        .output()
        .unwrap()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "failed ({:?}):\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn sha256(path: &Path) -> String {
    let out = run_ok(Command::new("sha256sum").arg(path));
    String::from_utf8_lossy(&out.stdout)[..64].to_owned()
}

/// Byte offset of partition `n` according to sfdisk (not our reader, so
/// it works on images ours refuses).
fn part_start(img: &Path, n: u64) -> u64 {
    let t = &sfdisk_json(img)["partitiontable"];
    let sector = t["sectorsize"].as_u64().unwrap_or(512);
    let p = t["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["node"].as_str().unwrap().ends_with(&n.to_string()))
        .unwrap_or_else(|| panic!("no partition {n}"));
    p["start"].as_u64().unwrap() * sector
}

/// Runs debugfs commands against partition `n` of `img` (`-w`: writable).
fn debugfs(img: &Path, n: u64, write: bool, commands: &str) -> String {
    let start = part_start(img, n);
    let cmds = img.with_extension(format!("debugfs-{n}"));
    std::fs::write(&cmds, commands).unwrap();
    let mut c = Command::new("debugfs");
    if write {
        c.arg("-w");
    }
    let out = run_ok(
        c.arg("-f")
            .arg(&cmds)
            .arg(format!("{}?offset={start}", img.display())),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    let bad: Vec<&str> = err
        .lines()
        .filter(|l| !l.starts_with("debugfs ") && !l.trim().is_empty())
        .collect();
    assert!(
        bad.iter().all(|l| l.contains("File not found")),
        "debugfs: {err}"
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Replaces (or creates) `path` in partition `n` of `img` with `text`.
fn put_file(img: &Path, n: u64, path: &str, text: &str, mode: &str) {
    let host = img.with_extension("put");
    std::fs::write(&host, text).unwrap();
    debugfs(
        img,
        n,
        true,
        &format!(
            "rm {path}\nwrite {} {path}\nsif {path} mode {mode}\nsif {path} uid 0\nsif {path} gid 0\n",
            host.display()
        ),
    );
}

/// One read-only debugfs request (`-R`: its output is not prefixed with
/// the echoed command, as `-f` output is).
fn debugfs_r(img: &Path, n: u64, request: &str) -> String {
    let out = run_ok(Command::new("debugfs").arg("-R").arg(request).arg(format!(
        "{}?offset={}",
        img.display(),
        part_start(img, n)
    )));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn cat(img: &Path, n: u64, path: &str) -> String {
    debugfs_r(img, n, &format!("cat {path}"))
}

/// The uid debugfs reports for `path`.
fn uid_of(img: &Path, n: u64, path: &str) -> u32 {
    let out = debugfs_r(img, n, &format!("stat {path}"));
    let after = out.split("User:").nth(1).expect("a User: field");
    after.split_whitespace().next().unwrap().parse().unwrap()
}

// --- the base image against image.os ---------------------------------------

#[test]
fn an_ubuntu_profile_on_an_armbian_image_is_refused_before_anything_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let base = fixture("armbian-rpi.img");
    let before = sha256(&base);
    let p = profile(tmp.path(), "pi4-microcloud.yaml", "ubuntu-24.04", &base);
    let out = tmp.path().join("out");
    let o = out.to_str().unwrap();
    let needles = [
        "node pi1",
        "image.os is ubuntu-24.04",
        "armbian-rpi.img is Armbian 25.8.1 for rpi4b",
        "no cloud-init",
        "set `os: armbian`",
    ];
    assert_fails(
        &hi_p(&p, &["build", "--node", "pi1", "--out", o]),
        1,
        &needles,
    );
    assert_fails(
        &hi_p(&p, &["build", "--node", "pi1", "--dry-run", "--out", o]),
        1,
        &needles,
    );
    let checked = hi_p(&p, &["check"]);
    assert_eq!(checked.status.code(), Some(1), "{}", stderr(&checked));
    for n in needles {
        assert!(stderr(&checked).contains(n), "{n}: {}", stderr(&checked));
    }
    assert!(!out.exists(), "the refused build created {o}");
    // Not even the state directory: the base is checked before secrets
    // are made.
    let state = tmp.path().join(".homelab-state");
    assert!(
        !state.exists(),
        "the refused build created {}",
        state.display()
    );
    assert_eq!(sha256(&base), before, "the base image changed");
}

#[test]
fn an_armbian_profile_on_an_ubuntu_image_and_the_wrong_ubuntu_release_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let base = fixture("ubuntu-raspi.img");
    let p = profile(tmp.path(), "armbian-rock5b.yaml", "armbian", &base);
    let out = tmp.path().join("out");
    let o = out.to_str().unwrap();
    let needles = [
        "node rock1",
        "image.os is armbian",
        "ubuntu-raspi.img is Ubuntu 24.04",
        "cloud-init 25.1.4",
        "set `os: ubuntu-24.04`",
    ];
    assert_fails(
        &hi_p(&p, &["build", "--node", "rock1", "--out", o]),
        1,
        &needles,
    );
    assert_fails(
        &hi_p(&p, &["build", "--node", "rock1", "--dry-run", "--out", o]),
        1,
        &needles,
    );
    assert!(!out.exists());
    // An Ubuntu release other than the one named (its state made first: a
    // dry run without one warns that its secrets are made for the run).
    let p = profile(tmp.path(), "pi4-microcloud.yaml", "ubuntu-22.04", &base);
    crate::profile_support::prepare_state(&p);
    assert_fails(
        &hi_p(&p, &["build", "--node", "pi1", "--dry-run", "--out", o]),
        1,
        &[
            "image.os is ubuntu-22.04",
            "Ubuntu 24.04",
            "set `os: ubuntu-24.04`",
        ],
    );
}

#[test]
fn check_checks_a_base_image_at_hand_and_says_when_it_could_not() {
    let tmp = tempfile::tempdir().unwrap();
    // The example as it is: a catalog image, not in the (empty) cache.
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles/pi4-microcloud.yaml");
    let p = write_profile(tmp.path(), &std::fs::read_to_string(src).unwrap());
    let text = ok(&hi_p(&p, &["check"]));
    assert!(
        text.contains("node pi1: image not checked against the profile: ubuntu-24.04-raspi is not in the cache"),
        "{text}"
    );
    assert!(text.contains("ok (3 nodes, 0 warnings)"), "{text}");
    let cache = tmp.path().join("cache");
    assert!(!cache.exists(), "check created the cache directory");
    // A local image is checked.
    let p = profile(
        tmp.path(),
        "pi4-microcloud.yaml",
        "ubuntu-24.04",
        &fixture("ubuntu-raspi.img"),
    );
    let text = ok(&hi_p(&p, &["check"]));
    assert!(
        text.contains("node pi2: image ")
            && text.contains("ubuntu-raspi.img: Ubuntu 24.04 (noble): Ubuntu raspi layout"),
        "{text}"
    );
}

#[test]
fn a_missing_image_path_fails_check_dry_run_and_render_at_its_line_and_column() {
    let tmp = tempfile::tempdir().unwrap();
    let p = profile(
        tmp.path(),
        "single-lxd.yaml",
        "ubuntu-24.04",
        Path::new("images/nowhere.img"),
    );
    let text = std::fs::read_to_string(&p).unwrap();
    let (line, l) = text
        .lines()
        .enumerate()
        .find(|(_, l)| l.contains("path: images/nowhere.img"))
        .unwrap();
    let column = l.find("images/").unwrap() + 1;
    let at = format!("homelab.yaml:{}:{column}: node lxd1: image.path:", line + 1);
    let missing = tmp.path().join("images/nowhere.img");
    let o = tmp.path().join("out");
    for args in [
        vec!["check"],
        vec![
            "build",
            "--node",
            "lxd1",
            "--dry-run",
            "--out",
            o.to_str().unwrap(),
        ],
        vec!["render", "--node", "lxd1"],
    ] {
        let out = hi_p(&p, &args);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(err.contains(&at), "{args:?}: {at:?} not in {err}");
        assert!(
            err.contains(&format!("{} does not exist", missing.display())),
            "{err}"
        );
    }
}

// --- profile rules -----------------------------------------------------------

const KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMxSAMby/XGYsjcC5K1MDkK2b2DTWIdw+3mOB8HYPwp7 a@b";

/// A one-node profile with `extra` lines in `defaults` and `users`.
fn small(extra: &str, users: &str) -> String {
    format!(
        "defaults:\n  image: {{os: ubuntu-24.04}}\n  board: rpi4\n{extra}  users:\n{users}\
         nodes:\n  - hostname: pi1\n    network: {{address: 10.0.0.5/24, gateway: 10.0.0.1}}\n\
         microcloud:\n  initiator: pi1\n  lookup_subnet: 10.0.0.0/24\n"
    )
}

fn check_result(text: &str) -> Output {
    let tmp = tempfile::tempdir().unwrap();
    let p = write_profile(tmp.path(), text);
    hi_p(&p, &["check"])
}

fn assert_check_refuses(text: &str, needles: &[&str]) {
    let out = check_result(text);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{text}\n{err}");
    for n in needles {
        assert!(err.contains(n), "{n:?} not in:\n{err}");
    }
}

#[test]
fn a_node_nobody_can_log_in_to_is_refused_unless_the_profile_says_so() {
    let keyless = "    - {name: alice, sudo: nopasswd}\n";
    assert_check_refuses(
        &small("", keyless),
        &[
            // The keyless users are written in defaults.
            "defaults.users: nobody could log in",
            "allow_no_login: true",
        ],
    );
    ok(&check_result(&small("  allow_no_login: true\n", keyless)));
    ok(&check_result(&small(
        "",
        &format!("    - {{name: alice, ssh_keys: ['{KEY}']}}\n"),
    )));
    // No users at all: the same.
    assert_check_refuses(&small("", "    []\n"), &["nobody could log in"]);
}

#[test]
fn time_zones_and_keyboard_layouts_must_be_names_the_image_knows() {
    let user = format!("    - {{name: alice, ssh_keys: ['{KEY}']}}\n");
    assert_check_refuses(
        &small("  timezone: Europe/Berln\n", &user),
        &[
            // Written in defaults: reported there.
            "node pi1: defaults.timezone: Europe/Berln is not a time zone",
            "did you mean Europe/Berlin?",
        ],
    );
    assert_check_refuses(
        &small("  keyboard: {layout: german}\n", &user),
        &[
            "node pi1: defaults.keyboard.layout: \"german\" is not an XKB keyboard layout",
            "did you mean de (German)?",
        ],
    );
    ok(&check_result(&small(
        "  timezone: America/Argentina/Buenos_Aires\n  keyboard: {layout: 'us,de'}\n",
        &user,
    )));
    ok(&check_result(&small("  timezone: UTC\n", &user)));
}

#[test]
fn an_ovn_range_over_the_gateway_or_a_node_address_is_refused() {
    let user = format!("    - {{name: alice, ssh_keys: ['{KEY}']}}\n");
    let with_range = |range: &str| {
        format!(
            "{}  ovn: {{ipv4_gateway: 10.0.0.1/24, ipv4_range: {range}}}\n",
            small("", &user)
        )
    };
    assert_check_refuses(
        &with_range("10.0.0.1-10.0.0.3"),
        &["microcloud.ovn.ipv4_range: 10.0.0.1-10.0.0.3 contains the OVN gateway 10.0.0.1"],
    );
    assert_check_refuses(
        &with_range("10.0.0.4-10.0.0.9"),
        &["microcloud.ovn.ipv4_range: 10.0.0.4-10.0.0.9 contains node pi1's address 10.0.0.5"],
    );
    // The node's own gateway (not the OVN one) inside the range.
    let other_gateway =
        with_range("10.0.0.200-10.0.0.254").replace("gateway: 10.0.0.1}", "gateway: 10.0.0.254}");
    assert_check_refuses(
        &other_gateway,
        &["contains the gateway 10.0.0.254 (network.gateway of node pi1)"],
    );
    ok(&check_result(&with_range("10.0.0.200-10.0.0.250")));
}

#[test]
fn kernel_disk_names_get_a_warning_suggesting_stable_ones() {
    let user = format!("    - {{name: alice, ssh_keys: ['{KEY}']}}\n");
    let out = check_result(&small(
        "  storage: {local: /dev/sda, ceph: [/dev/sdb1]}\n",
        &user,
    ));
    let text = ok(&out);
    let err = stderr(&out);
    for field in [
        "storage.local: /dev/sda is a name",
        "storage.ceph: /dev/sdb1 is a name",
    ] {
        assert!(err.contains("warning: ") && err.contains(field), "{err}");
    }
    assert!(err.contains("/dev/disk/by-id/"), "{err}");
    // The third: Ceph on one node keeps no redundant copies.
    assert!(err.contains("Ceph with disks on 1 node(s)"), "{err}");
    assert!(text.contains("ok (1 node, 3 warnings)"), "{text}");
    let out = check_result(&small(
        "  storage: {local: /dev/disk/by-id/usb-ssd-1, ceph: [/dev/nvme0n1]}\n",
        &user,
    ));
    assert!(ok(&out).contains("ok (1 node, 1 warning)"));
    assert!(
        !stderr(&out).contains("is a name the kernel gives"),
        "{}",
        stderr(&out)
    );
}

// --- uids against the image ----------------------------------------------------

/// A copy of the Armbian single-root fixture whose image already has the
/// account `armbian` with uid 1000 (and its group), plus `login_defs`.
fn armbian_with_user_1000(dir: &Path, login_defs: Option<&str>) -> PathBuf {
    let img = copy_fixture("armbian-single-gpt.img", dir);
    let passwd = cat(&img, 1, "/etc/passwd");
    let group = cat(&img, 1, "/etc/group");
    put_file(
        &img,
        1,
        "/etc/passwd",
        &format!("{passwd}armbian:x:1000:1000:Armbian:/home/armbian:/bin/bash\n"),
        "0100644",
    );
    put_file(
        &img,
        1,
        "/etc/group",
        &format!("{group}armbian:x:1000:\n"),
        "0100644",
    );
    if let Some(defs) = login_defs {
        put_file(&img, 1, "/etc/login.defs", defs, "0100644");
    }
    img
}

#[test]
fn users_without_a_uid_take_the_next_free_uid_of_the_image() {
    let tmp = tempfile::tempdir().unwrap();
    let base = armbian_with_user_1000(tmp.path(), None);
    let p = profile(tmp.path(), "armbian-rock5b.yaml", "armbian", &base);
    let out = tmp.path().join("out");
    let o = out.to_str().unwrap();
    // The dry run and render say which uid alice gets.
    let plan = ok(&hi_p(
        &p,
        &["build", "--node", "rock1", "--dry-run", "--out", o],
    ));
    assert!(
        plan.contains(
            "note  user alice gets uid 1001 (the next free one: 1000 is armbian's in the image)"
        ),
        "{plan}"
    );
    assert!(
        plan.contains("1001:1001") && !plan.contains("1000:1000"),
        "{plan}"
    );
    let render = hi_p(&p, &["render", "--node", "rock1"]);
    assert!(ok(&render).contains("alice:x:1001:1001:"));
    assert!(
        stderr(&render).contains("note: node rock1: user alice gets uid 1001"),
        "{}",
        stderr(&render)
    );
    // The build: alice is 1001 in passwd and owns her home; armbian stays.
    let built = hi_p(&p, &["build", "--node", "rock1", "--out", o]);
    ok(&built);
    assert!(stderr(&built).contains("user alice gets uid 1001"));
    let img = out.join("rock1.img");
    let passwd = cat(&img, 1, "/etc/passwd");
    assert!(
        passwd.contains("armbian:x:1000:1000:Armbian:/home/armbian:/bin/bash\n")
            && passwd.contains("alice:x:1001:1001:"),
        "{passwd}"
    );
    assert!(cat(&img, 1, "/etc/group").contains("alice:x:1001:"));
    for path in [
        "/home/alice",
        "/home/alice/.ssh/authorized_keys",
        "/home/alice/.hushlogin",
    ] {
        assert_eq!(uid_of(&img, 1, path), 1001, "{path}");
    }
    let (start, len) = our_partition(&img, 1);
    let part = tmp.path().join("root.ext4");
    extract_partition(&img, start, len, &part);
    assert_fsck_clean(&part, "rock1.img partition 1");
    // UID_MIN from the image's login.defs counts.
    let dir = tmp.path().join("defs");
    std::fs::create_dir(&dir).unwrap();
    let base = armbian_with_user_1000(&dir, Some("UID_MIN\t\t\t 2000\nUID_MAX\t\t\t60000\n"));
    let p = profile(&dir, "armbian-rock5b.yaml", "armbian", &base);
    let plan = ok(&hi_p(
        &p,
        &["build", "--node", "rock1", "--dry-run", "--out", o],
    ));
    assert!(
        plan.contains("user alice gets uid 2000 (the first free one)"),
        "{plan}"
    );
}

#[test]
fn a_pinned_uid_that_the_image_already_uses_is_refused_clearly() {
    let tmp = tempfile::tempdir().unwrap();
    let base = armbian_with_user_1000(tmp.path(), None);
    let p = profile(tmp.path(), "armbian-rock5b.yaml", "armbian", &base);
    let text = std::fs::read_to_string(&p).unwrap().replace(
        "      - name: alice\n",
        "      - name: alice\n        uid: 1000\n",
    );
    std::fs::write(&p, text).unwrap();
    // The state made first: a dry run without one warns that its secrets
    // are made for the run.
    crate::profile_support::prepare_state(&p);
    let out = tmp.path().join("out");
    let o = out.to_str().unwrap();
    let needles = [
        "node rock1",
        "/etc/passwd: id 1000 of alice is already used by armbian",
    ];
    assert_fails(
        &hi_p(&p, &["build", "--node", "rock1", "--dry-run", "--out", o]),
        1,
        &needles,
    );
    assert_fails(
        &hi_p(&p, &["build", "--node", "rock1", "--out", o]),
        1,
        &needles,
    );
    assert!(!out.exists());
}

// --- a damaged FAT ------------------------------------------------------------

#[test]
fn a_fat_partition_with_a_damaged_boot_sector_is_reported_damaged_not_missing() {
    let tmp = tempfile::tempdir().unwrap();
    for (what, offset, bytes, detail) in [
        (
            "signature",
            510,
            &[0u8, 0][..],
            "no signature: bytes 510-511 are 00 00, not 55 aa",
        ),
        (
            "jump",
            0,
            &[0u8][..],
            "starts with 00, not the jump instruction",
        ),
    ] {
        let dir = tmp.path().join(what);
        std::fs::create_dir(&dir).unwrap();
        let img = copy_fixture("ubuntu-raspi.img", &dir);
        patch(&img, part_start(&img, 1) + offset, bytes);
        let i = img.to_str().unwrap();
        let out = bin().args(["inspect", i]).output().unwrap();
        assert_fails(
            &out,
            1,
            &[
                "ubuntu-raspi.img: partition 1",
                "type c (FAT32) says FAT",
                "the FAT is damaged",
                detail,
            ],
        );
        assert!(!stderr(&out).contains("single root"), "{}", stderr(&out));
        let p = profile(&dir, "pi4-microcloud.yaml", "ubuntu-24.04", &img);
        let o = dir.join("out");
        assert_fails(
            &hi_p(
                &p,
                &["build", "--node", "pi1", "--out", o.to_str().unwrap()],
            ),
            1,
            &[
                "partition 1: no filesystem we can read",
                "the FAT is damaged",
                detail,
            ],
        );
        // The ext4 root is still readable on its own.
        assert!(cat(&img, 2, "/etc/hostname").contains("ubuntu"));
    }
}

// --- first boot: /snap/bin and NTP --------------------------------------------

#[test]
fn the_first_boot_unit_and_script_find_snap_commands_in_snap_bin() {
    let tmp = tempfile::tempdir().unwrap();
    let p = profile(
        tmp.path(),
        "armbian-rock5b.yaml",
        "armbian",
        &fixture("armbian-single-gpt.img"),
    );
    let tree = tmp.path().join("tree");
    ok(&hi_p(
        &p,
        &["render", "--node", "rock1", "--out", tree.to_str().unwrap()],
    ));
    let unit =
        std::fs::read_to_string(tree.join("root/etc/systemd/system/homelab-firstboot.service"))
            .unwrap();
    let env = unit
        .lines()
        .find_map(|l| l.strip_prefix("Environment=PATH="))
        .expect("the unit sets PATH");
    assert!(env.split(':').any(|d| d == "/snap/bin"), "{env}");
    assert!(env.split(':').any(|d| d == "/usr/bin"), "{env}");
    // The script adds /snap/bin to whatever PATH it gets, once.
    let script = tree.join("root/usr/local/sbin/homelab-firstboot");
    let text = std::fs::read_to_string(&script).unwrap();
    let start = text.find("case \":${PATH}:\"").expect("the PATH fix");
    let end = text[start..].find("export PATH").unwrap() + start + "export PATH".len();
    for (given, want) in [
        ("/usr/bin:/bin", "/usr/bin:/bin:/snap/bin"),
        ("/snap/bin:/usr/bin", "/snap/bin:/usr/bin"),
    ] {
        let out = run_ok(
            Command::new("bash")
                .arg("-c")
                .arg(format!("{}\nprintf %s \"$PATH\"", &text[start..end]))
                .env("PATH", given),
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout), want);
    }
}

/// A copy of `fixture` whose root (partition `n`) has exactly the NTP
/// client `client` (`None`: none at all).
fn with_ntp_client(dir: &Path, name: &str, n: u64, client: Option<&str>) -> PathBuf {
    let img = copy_fixture(name, dir);
    debugfs(
        &img,
        n,
        true,
        "rm /usr/sbin/chronyd\nrm /usr/sbin/ntpd\nrm /usr/lib/systemd/systemd-timesyncd\n",
    );
    let daemon = match client {
        Some("chrony") => Some("/usr/sbin/chronyd"),
        Some("systemd-timesyncd") => Some("/usr/lib/systemd/systemd-timesyncd"),
        Some(other) => panic!("{other}"),
        None => None,
    };
    if let Some(d) = daemon {
        put_file(&img, n, d, "#!/bin/sh\n", "0100755");
    }
    img
}

fn schema_ok(user_data: &Path) {
    let out = Command::new("cloud-init")
        .args(["schema", "--config-file"])
        .arg(user_data)
        .output()
        .expect("cloud-init (the test command installs it)");
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("Valid cloud-config"),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_images_ntp_client_is_pinned_and_an_image_without_one_gets_no_ntp_section() {
    let tmp = tempfile::tempdir().unwrap();
    // A build on an image with systemd-timesyncd.
    let dir = tmp.path().join("timesyncd");
    std::fs::create_dir(&dir).unwrap();
    let base = with_ntp_client(&dir, "ubuntu-raspi.img", 2, Some("systemd-timesyncd"));
    let p = profile(&dir, "pi4-microcloud.yaml", "ubuntu-24.04", &base);
    let out = dir.join("out");
    let built = hi_p(
        &p,
        &["build", "--node", "pi1", "--out", out.to_str().unwrap()],
    );
    ok(&built);
    assert!(!stderr(&built).contains("NTP"), "{}", stderr(&built));
    let ud = bin()
        .args([
            "cat",
            out.join("pi1.img").to_str().unwrap(),
            "system-boot",
            "/user-data",
        ])
        .output()
        .unwrap();
    let ud = ok(&ud);
    assert!(
        ud.contains("ntp:\n  enabled: true\n  ntp_client: systemd-timesyncd\n  servers:"),
        "{ud}"
    );
    let ud_file = dir.join("user-data");
    std::fs::write(&ud_file, &ud).unwrap();
    schema_ok(&ud_file);

    // chrony: pinned to chrony (render reads the image the same way).
    let dir = tmp.path().join("chrony");
    std::fs::create_dir(&dir).unwrap();
    let base = with_ntp_client(&dir, "ubuntu-raspi.img", 2, Some("chrony"));
    let p = profile(&dir, "pi4-microcloud.yaml", "ubuntu-24.04", &base);
    let tree = dir.join("tree");
    ok(&hi_p(
        &p,
        &["render", "--node", "pi1", "--out", tree.to_str().unwrap()],
    ));
    let ud = std::fs::read_to_string(tree.join("boot/user-data")).unwrap();
    assert!(ud.contains("  ntp_client: chrony\n"), "{ud}");
    schema_ok(&tree.join("boot/user-data"));

    // None: no ntp section at all (cloud-init would install one at boot),
    // and a warning from the dry run, render and build.
    let dir = tmp.path().join("none");
    std::fs::create_dir(&dir).unwrap();
    let base = with_ntp_client(&dir, "ubuntu-raspi.img", 2, None);
    let p = profile(&dir, "pi4-microcloud.yaml", "ubuntu-24.04", &base);
    let tree = dir.join("tree");
    let rendered = hi_p(
        &p,
        &["render", "--node", "pi1", "--out", tree.to_str().unwrap()],
    );
    ok(&rendered);
    let ud = std::fs::read_to_string(tree.join("boot/user-data")).unwrap();
    assert!(!ud.contains("ntp"), "{ud}");
    schema_ok(&tree.join("boot/user-data"));
    let o = dir.join("out");
    let planned = hi_p(
        &p,
        &[
            "build",
            "--node",
            "pi1",
            "--dry-run",
            "--out",
            o.to_str().unwrap(),
        ],
    );
    ok(&planned);
    for err in [stderr(&rendered), stderr(&planned)] {
        assert!(
            err.contains("warning: node pi1:")
                && err.contains("has no NTP client")
                && err.contains("the profile's ntp servers are not configured"),
            "{err}"
        );
    }
}

#[test]
fn an_armbian_image_with_chrony_gets_the_ntp_servers_in_chrony_sources() {
    let tmp = tempfile::tempdir().unwrap();
    let base = with_ntp_client(tmp.path(), "armbian-single-gpt.img", 1, Some("chrony"));
    let p = profile(tmp.path(), "armbian-rock5b.yaml", "armbian", &base);
    let text = std::fs::read_to_string(&p).unwrap().replace(
        "  timezone: Etc/UTC\n",
        "  timezone: Etc/UTC\n  ntp: [ntp.example.org, 10.0.0.1]\n",
    );
    std::fs::write(&p, text).unwrap();
    let tree = tmp.path().join("tree");
    let r = hi_p(
        &p,
        &["render", "--node", "rock1", "--out", tree.to_str().unwrap()],
    );
    ok(&r);
    assert!(!stderr(&r).contains("NTP"), "{}", stderr(&r));
    assert_eq!(
        std::fs::read_to_string(tree.join("root/etc/chrony/sources.d/homelab.sources")).unwrap(),
        "server ntp.example.org iburst\nserver 10.0.0.1 iburst\n"
    );
    assert!(!tree.join("root/etc/systemd/timesyncd.conf.d").exists());
}

#[test]
fn a_fifo_named_as_image_path_is_refused_not_waited_on() {
    let tmp = tempfile::tempdir().unwrap();
    let fifo = tmp.path().join("base.img");
    crate::util::run_ok(std::process::Command::new("mkfifo").arg(&fifo));
    let p = profile(tmp.path(), "pi4-microcloud.yaml", "ubuntu-24.04", &fifo);
    let out = tmp.path().join("out");
    for dry in [false, true] {
        let mut cmd = crate::util::bin();
        cmd.arg("--profile")
            .arg(&p)
            .args(["build", "--node", "pi1", "--out"])
            .arg(&out)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        if dry {
            cmd.arg("--dry-run");
        }
        let mut child = cmd.spawn().unwrap();
        let t0 = std::time::Instant::now();
        while child.try_wait().unwrap().is_none() {
            if t0.elapsed().as_secs() > 30 {
                child.kill().unwrap();
                panic!("build (dry run: {dry}) hung on the FIFO");
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let r = child.wait_with_output().unwrap();
        let err = stderr(&r);
        let fifo_named = "a FIFO (named pipe), not a regular file";
        if dry {
            // The plan says why the image was not checked.
            let plan = String::from_utf8_lossy(&r.stdout);
            assert!(plan.contains(fifo_named), "{plan}{err}");
        } else {
            assert!(err.contains(fifo_named), "{err}");
            assert_eq!(r.status.code(), Some(1), "{err}");
        }
    }
    assert!(!out.exists());
}
