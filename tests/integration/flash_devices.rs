//! `devices` and `devices --json` over a fake sysfs/procfs tree
//! (`HOMELAB_SYSROOT`, test-only), judged by parsing the JSON and reading
//! the table.

use std::path::Path;
use std::process::Output;

use super::flash_fake_sys::workstation;
use super::util::bin;

/// Runs `homelab-image ARGS` against the fake tree at `root`, with the
/// cache in `cache` (a real path, so the cache-disk rule sees a real
/// device number that no fake disk has).
pub fn devices_in(root: &Path, cache: &Path, args: &[&str]) -> Output {
    bin()
        .arg("devices")
        .args(args)
        .env("HOMELAB_SYSROOT", root)
        .env("HOMELAB_CACHE_DIR", cache)
        .output()
        .expect("spawning homelab-image")
}

fn json_of(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "devices failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("devices --json prints JSON")
}

fn by_path<'a>(list: &'a serde_json::Value, path: &str) -> &'a serde_json::Value {
    list.as_array()
        .expect("a JSON array")
        .iter()
        .find(|d| d["path"] == path)
        .unwrap_or_else(|| panic!("{path} missing from {list:#}"))
}

#[test]
fn devices_json_describes_each_disk_and_what_flash_would_do() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    workstation(&root);
    let list = json_of(&devices_in(&root, tmp.path(), &["--json"]));

    let paths: Vec<_> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["path"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        paths,
        [
            "/dev/mmcblk0",
            "/dev/mmcblk1",
            "/dev/nvme0n1",
            "/dev/sda",
            "/dev/sdb",
            "/dev/sdc",
            "/dev/sdd",
            "/dev/sde",
            "/dev/sdf"
        ],
        "loop, dm and the empty reader are listed only with --all"
    );

    let ssd = by_path(&list, "/dev/sdb");
    assert_eq!(
        ssd,
        &serde_json::json!({
            "path": "/dev/sdb", "dev": "8:176", "size": 240u64 << 30,
            "vendor": "Samsung", "model": "Portable SSD T7", "serial": "S5SCNS0R700123",
            "transport": "usb", "removable": false, "read_only": false,
            "partitions": [], "mounts": [], "swaps": [], "holders": [],
            "status": "candidate", "rule": null, "override": null, "message": null
        })
    );
    // Absent values are null, not missing or empty.
    let swapdisk = by_path(&list, "/dev/sdd");
    assert!(swapdisk["vendor"].is_null() && swapdisk["model"].is_null());
    assert!(swapdisk["serial"].is_null());
    assert_eq!(swapdisk["swaps"], serde_json::json!(["/dev/sdd2"]));
    assert_eq!(swapdisk["rule"], "swap");

    let system = by_path(&list, "/dev/nvme0n1");
    assert_eq!(system["transport"], "nvme");
    assert_eq!(system["status"], "refused");
    assert_eq!(system["rule"], "system-disk");
    assert_eq!(
        system["mounts"],
        serde_json::json!([
            {"device": "/dev/dm-51", "mount_point": "/"},
            {"device": "/dev/nvme0n1p1", "mount_point": "/boot/efi"}
        ])
    );
    assert_eq!(
        system["holders"],
        serde_json::json!([
            {"device": "/dev/dm-50", "kind": "dm-crypt", "of": "/dev/nvme0n1p2"},
            {"device": "/dev/dm-51", "kind": "lvm", "of": "/dev/dm-50"}
        ])
    );

    let expect = [
        ("/dev/mmcblk0", "candidate", None, None),
        ("/dev/mmcblk1", "refused", Some("read-only"), None),
        (
            "/dev/sda",
            "refused",
            Some("internal"),
            Some("--allow-internal"),
        ),
        ("/dev/sdc", "refused", Some("mounted"), None),
        ("/dev/sde", "refused", Some("holder"), None),
        ("/dev/sdf", "confirm", Some("large-disk"), Some("--yes")),
    ];
    for (path, status, rule, flag) in expect {
        let d = by_path(&list, path);
        assert_eq!(d["status"], status, "{path}: {d:#}");
        assert_eq!(d["rule"].as_str(), rule, "{path}");
        assert_eq!(d["override"].as_str(), flag, "{path}");
    }
    assert_eq!(by_path(&list, "/dev/mmcblk0")["transport"], "mmc");
    assert_eq!(by_path(&list, "/dev/sda")["transport"], "sata");
}

#[test]
fn devices_all_lists_loop_devices_as_candidates_only_when_named() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    workstation(&root);
    let list = json_of(&devices_in(&root, tmp.path(), &["--json", "--all"]));
    let lp = by_path(&list, "/dev/loop50");
    assert_eq!(lp["transport"], "loop");
    assert_eq!(lp["status"], "named-only");
    assert_eq!(by_path(&list, "/dev/sdg")["rule"], "no-medium");
    assert_eq!(by_path(&list, "/dev/dm-50")["transport"], "virtual");
}

#[test]
fn devices_allow_internal_turns_the_sata_disk_into_a_candidate() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    workstation(&root);
    let list = json_of(&devices_in(
        &root,
        tmp.path(),
        &["--json", "--allow-internal"],
    ));
    // 2 TiB: past the internal rule, the size asks for confirmation.
    assert_eq!(by_path(&list, "/dev/sda")["status"], "confirm");
    assert_eq!(by_path(&list, "/dev/nvme0n1")["rule"], "system-disk");
}

#[test]
fn devices_table_shows_one_row_per_disk_with_its_verdict() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    workstation(&root);
    let out = devices_in(&root, tmp.path(), &[]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("DEVICE"), "{text}");
    assert_eq!(lines.len(), 10, "a header and 9 disks:\n{text}");
    let row = |dev: &str| {
        *lines
            .iter()
            .find(|l| l.starts_with(&format!("{dev} ")))
            .unwrap_or_else(|| panic!("no row for {dev}:\n{text}"))
    };
    let sdb = row("/dev/sdb");
    for want in [
        "240 GiB",
        "usb",
        "Samsung Portable SSD T7",
        "S5SCNS0R700123",
    ] {
        assert!(sdb.contains(want), "{want} missing: {sdb}");
    }
    assert!(sdb.ends_with("candidate"), "{sdb}");
    assert!(row("/dev/sdc").contains("/dev/sdc1 on /media/me/MY STICK"));
    assert!(row("/dev/sdc").ends_with("no: mounted"));
    assert!(row("/dev/sda").ends_with("no: internal (--allow-internal)"));
    assert!(row("/dev/sdf").ends_with("candidate, confirm size"));
    assert!(row("/dev/sde").contains("/dev/sde1 held by /dev/dm-52"));
    assert!(!text.contains("/dev/loop50"), "{text}");
}

#[test]
fn a_sysroot_whose_links_leave_it_is_an_error_not_a_read_of_the_real_system() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    workstation(&root);
    std::os::unix::fs::symlink("../../../../sys/block/vda", root.join("sys/block/vdz")).unwrap();
    let out = devices_in(&root, tmp.path(), &["--json"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("sys/block/vdz: link to"), "{err}");
    assert!(err.contains("leaves the system root"), "{err}");
    assert!(out.stdout.is_empty());
}
