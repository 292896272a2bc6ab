//! `inspect --json` agrees with sfdisk (table), blkid (filesystems) and
//! debugfs/mtools (file contents) on every fixture.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::util::{blkid_at, extract_partition, fixture, gpt4k, hi_ok, sfdisk_json, stdout_of};

/// Every generated fixture with a partition table.
const FIXTURES: [&str; 6] = [
    "ubuntu-raspi.img",
    "ubuntu-raspi-2604.img",
    "armbian-rpi.img",
    "armbian-single-gpt.img",
    "armbian-single-mbr.img",
    "mbr-logical.img",
];

fn inspect_json(image: &Path) -> Value {
    serde_json::from_str(&hi_ok(&["inspect", "--json", image.to_str().unwrap()]))
        .expect("inspect --json prints JSON")
}

/// Compares our table with `sfdisk --json`'s `partitiontable` object.
fn assert_table_matches(ours: &Value, sfdisk: &Value, name: &str) {
    let t = &sfdisk["partitiontable"];
    let kind = match t["label"].as_str().unwrap() {
        "dos" => "mbr",
        other => other,
    };
    assert_eq!(ours["table"]["kind"], kind, "{name}: table kind");
    assert_eq!(
        ours["table"]["disk_id"].as_str().unwrap().to_lowercase(),
        t["id"].as_str().unwrap().to_lowercase(),
        "{name}: disk id"
    );
    if let Some(ss) = t.get("sectorsize") {
        assert_eq!(&ours["table"]["sector_size"], ss, "{name}: sector size");
    }
    let theirs = t["partitions"].as_array().unwrap();
    let mine = ours["partitions"].as_array().unwrap();
    assert_eq!(mine.len(), theirs.len(), "{name}: partition count");
    for (m, s) in mine.iter().zip(theirs) {
        let node = s["node"].as_str().unwrap();
        // sfdisk names partitions of an image file `<path><number>`.
        let prefix = node.trim_end_matches(|c: char| c.is_ascii_digit());
        let number: u64 = node[prefix.len()..].parse().unwrap();
        assert_eq!(m["number"], number, "{name}: {node} number");
        assert_eq!(m["start_lba"], s["start"], "{name}: {node} start");
        assert_eq!(m["size_sectors"], s["size"], "{name}: {node} size");
        assert_eq!(
            m["type_id"].as_str().unwrap().to_lowercase(),
            s["type"].as_str().unwrap().to_lowercase(),
            "{name}: {node} type"
        );
        if let Some(uuid) = s.get("uuid") {
            assert_eq!(
                m["partuuid"].as_str().unwrap().to_lowercase(),
                uuid.as_str().unwrap().to_lowercase(),
                "{name}: {node} uuid"
            );
        }
        if let Some(pname) = s.get("name") {
            assert_eq!(&m["name"], pname, "{name}: {node} name");
        }
        assert_eq!(
            m["bootable"].as_bool().unwrap(),
            s.get("bootable").and_then(Value::as_bool).unwrap_or(false),
            "{name}: {node} bootable"
        );
    }
}

#[test]
fn tables_agree_with_sfdisk() {
    for name in FIXTURES {
        let image = fixture(name);
        let sfdisk = sfdisk_json(&image);
        assert_table_matches(&inspect_json(&image), &sfdisk, name);
    }
}

#[test]
fn gpt_with_4096_byte_sectors_agrees_with_sfdisk_on_a_loop_device() {
    let tmp = tempfile::tempdir().unwrap();
    let image = gpt4k(tmp.path());
    let expected: Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/committed/gpt-4k.sfdisk.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let ours = inspect_json(&image);
    assert_eq!(ours["table"]["sector_size"], 4096);
    assert_table_matches(&ours, &expected, "gpt-4k.img");
}

#[test]
fn filesystems_agree_with_blkid() {
    let tmp = tempfile::tempdir().unwrap();
    let mut images: Vec<_> = FIXTURES.iter().map(|n| fixture(n)).collect();
    images.push(gpt4k(tmp.path()));
    let mut seen = 0;
    for image in images {
        let ours = inspect_json(&image);
        for p in ours["partitions"].as_array().unwrap() {
            let blkid = blkid_at(&image, p["start_bytes"].as_u64().unwrap());
            let fs = &p["filesystem"];
            let what = format!("{} p{}", image.display(), p["number"]);
            match blkid.get("TYPE") {
                None => assert!(fs.is_null(), "{what}: blkid finds nothing, we found {fs}"),
                Some(t) => {
                    seen += 1;
                    assert_eq!(fs["type"].as_str(), Some(t.as_str()), "{what}: type");
                    assert_eq!(
                        fs["uuid"].as_str(),
                        blkid.get("UUID").map(String::as_str),
                        "{what}: uuid"
                    );
                    assert_eq!(
                        fs["label"].as_str(),
                        blkid.get("LABEL").map(String::as_str),
                        "{what}: label"
                    );
                    if let Some(v) = blkid.get("VERSION").filter(|_| t == "vfat") {
                        assert_eq!(
                            fs["version"].as_str(),
                            Some(v.as_str()),
                            "{what}: FAT version"
                        );
                    }
                }
            }
        }
    }
    assert!(seen >= 12, "only {seen} filesystems compared");
}

/// `debugfs -R "cat PATH"` on partition `n` of `image`.
fn debugfs_cat(image: &Path, n: u64, path: &str) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let (start, len) = crate::util::our_partition(image, n);
    let fs = tmp.path().join("p.ext4");
    extract_partition(image, start, len, &fs);
    stdout_of(
        Command::new("debugfs")
            .arg("-R")
            .arg(format!("cat {path}"))
            .arg(&fs),
    )
}

fn os_release_value(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let v = l.strip_prefix(key)?.strip_prefix('=')?;
        Some(v.trim_matches('"').to_string())
    })
}

#[test]
fn os_and_cloud_init_agree_with_debugfs() {
    for name in FIXTURES.iter().filter(|n| **n != "mbr-logical.img") {
        let image = fixture(name);
        let ours = inspect_json(&image);
        let root = ours["layout"]["root"]
            .as_u64()
            .unwrap_or_else(|| panic!("{name}: no layout"));
        let release = debugfs_cat(&image, root, "/usr/lib/os-release");
        for (key, field) in [
            ("NAME", "name"),
            ("VERSION_ID", "version_id"),
            ("VERSION_CODENAME", "version_codename"),
        ] {
            assert_eq!(
                ours["os"][field].as_str().map(str::to_string),
                os_release_value(&release, key),
                "{name}: os.{field}"
            );
        }
        let cfg = debugfs_cat(&image, root, "/etc/cloud/cloud.cfg.d/99-fake_cloud.cfg");
        let configs = ours["cloud_init"]["datasource_configs"].as_array().unwrap();
        if cfg.contains("fs_label: system-boot") {
            assert_eq!(ours["cloud_init"]["installed"], true, "{name}");
            assert!(
                configs
                    .iter()
                    .any(|c| c["nocloud_fs_label"] == "system-boot"
                        && c["path"] == "/etc/cloud/cloud.cfg.d/99-fake_cloud.cfg"),
                "{name}: {configs:?}"
            );
            let version = debugfs_cat(
                &image,
                root,
                "/usr/lib/python3/dist-packages/cloudinit/version.py",
            );
            let v = ours["cloud_init"]["version"].as_str().unwrap();
            assert!(
                version.contains(&format!("\"{v}\"")),
                "{name}: version {v} vs {version}"
            );
        } else {
            assert_eq!(ours["cloud_init"]["installed"], false, "{name}");
            assert!(configs.is_empty(), "{name}: {configs:?}");
        }
    }
}

#[test]
fn layouts_are_recognised() {
    for (name, kind, boot, root) in [
        ("ubuntu-raspi.img", "ubuntu-raspi", Some(1), 2),
        ("ubuntu-raspi-2604.img", "ubuntu-raspi", Some(1), 2),
        ("armbian-rpi.img", "armbian-rpi", Some(1), 2),
        ("armbian-single-gpt.img", "armbian-single-root", None, 1),
        ("armbian-single-mbr.img", "armbian-single-root", None, 1),
    ] {
        let ours = inspect_json(&fixture(name));
        let l = &ours["layout"];
        assert_eq!(l["kind"], kind, "{name}");
        assert_eq!(l["boot"].as_u64(), boot, "{name}");
        assert_eq!(l["root"], root, "{name}");
    }
    // Armbian single root: the raw area is everything before the partition.
    let gpt = inspect_json(&fixture("armbian-single-gpt.img"));
    assert_eq!(gpt["layout"]["raw_area_bytes"], 16 << 20);
    // A FAT that is no boot partition we know, beside one ext4: no guess.
    let logical = inspect_json(&fixture("mbr-logical.img"));
    assert!(logical["layout"].is_null());
    assert!(logical["layout_problem"].as_str().is_some());
}

/// The boot files and seed agree with mtools' view of the FAT.
#[test]
fn boot_config_and_seed_agree_with_mtools() {
    for (name, cmdline) in [
        ("ubuntu-raspi.img", "/cmdline.txt"),
        ("ubuntu-raspi-2604.img", "/current/cmdline.txt"),
        ("armbian-rpi.img", "/cmdline.txt"),
    ] {
        let image = fixture(name);
        let ours = inspect_json(&image);
        let (start, _) = crate::util::our_partition(&image, 1);
        let spec = format!("{}@@{start}", image.display());
        let text = stdout_of(
            Command::new("mtype")
                .env("MTOOLS_SKIP_CHECK", "1")
                .args(["-i", &spec])
                .arg(format!("::{cmdline}")),
        );
        let files = ours["boot_config"].as_array().unwrap();
        let found = files
            .iter()
            .find(|f| f["path"] == cmdline)
            .unwrap_or_else(|| panic!("{name}: no {cmdline} in {files:?}"));
        assert_eq!(
            found["content"].as_str().unwrap(),
            text.lines().next().unwrap().trim()
        );
        let listing = stdout_of(
            Command::new("mdir")
                .env("MTOOLS_SKIP_CHECK", "1")
                .args(["-b", "-i", &spec, "::/"]),
        );
        let seed_names: Vec<&str> = ours["seed"]["files"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["name"].as_str().unwrap())
            .collect();
        for seed in ["user-data", "meta-data", "network-config", "vendor-data"] {
            let in_mdir = listing
                .lines()
                .any(|l| l.trim_end_matches('/').ends_with(&format!("/{seed}")));
            assert_eq!(
                seed_names.contains(&seed),
                in_mdir,
                "{name}: {seed}\n{listing}"
            );
        }
    }
}

#[test]
fn human_output_names_the_essentials() {
    let text = hi_ok(&["inspect", fixture("ubuntu-raspi.img").to_str().unwrap()]);
    for needle in [
        "MBR",
        "system-boot",
        "writable",
        "Ubuntu raspi",
        "24.04",
        "noble",
        "cmdline.txt",
        "fs_label system-boot",
        "user-data",
    ] {
        assert!(text.contains(needle), "lacks {needle:?}:\n{text}");
    }
    for line in text.lines() {
        assert!(line.chars().count() <= 80, "overlong line: {line}");
    }
    // No colour codes unless asked for; with --color always, there are.
    assert!(!text.contains('\x1b'));
    let coloured = hi_ok(&[
        "--color",
        "always",
        "inspect",
        fixture("ubuntu-raspi.img").to_str().unwrap(),
    ]);
    assert!(coloured.contains("\x1b[1m"));
}

/// A disk laid out like Ubuntu 24.04's cloud images (GPT: p14 BIOS boot,
/// p15 ESP "UEFI", p16 ext4 "BOOT", p1 ext4 "cloudimg-rootfs" last), made
/// here with sgdisk, mkfs.vfat and mke2fs at partition offsets.
fn cloud_layout_disk(dir: &Path) -> std::path::PathBuf {
    let img = dir.join("cloud.img");
    let f = std::fs::File::create(&img).unwrap();
    f.set_len(64 << 20).unwrap();
    drop(f);
    crate::util::run_ok(
        Command::new("sgdisk")
            .arg("--clear")
            .args([
                "--new=14:2048:+4M",
                "--typecode=14:EF02",
                "--new=15:0:+16M",
                "--typecode=15:EF00",
                "--new=16:0:+16M",
                "--typecode=16:EA00",
                "--new=1:0:0",
                "--typecode=1:8300",
            ])
            .arg(&img),
    );
    for (n, args) in [
        (15u64, vec!["mkfs.vfat", "-F", "16", "-n", "UEFI"]),
        (16, vec!["mke2fs", "-q", "-F", "-t", "ext4", "-L", "BOOT"]),
        (
            1,
            vec!["mke2fs", "-q", "-F", "-t", "ext4", "-L", "cloudimg-rootfs"],
        ),
    ] {
        // sfdisk, not inspect: the partitions are still empty here.
        let table = sfdisk_json(&img);
        let entry = table["partitiontable"]["partitions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["node"].as_str().unwrap().ends_with(&format!("img{n}")))
            .unwrap()
            .clone();
        let start = entry["start"].as_u64().unwrap() * 512;
        let len = entry["size"].as_u64().unwrap() * 512;
        let part = dir.join(format!("p{n}"));
        extract_partition(&img, start, len, &part);
        crate::util::run_ok(Command::new(args[0]).args(&args[1..]).arg(&part));
        crate::util::run_ok(
            Command::new("dd")
                .arg(format!("if={}", part.display()))
                .arg(format!("of={}", img.display()))
                .args([
                    "bs=1M",
                    "oflag=seek_bytes",
                    "conv=notrunc,sparse",
                    "status=none",
                ])
                .arg(format!("seek={start}")),
        );
    }
    img
}

#[test]
fn a_cloud_image_layout_is_recognised_by_its_root_label() {
    let tmp = tempfile::tempdir().unwrap();
    let img = cloud_layout_disk(tmp.path());
    let ours = inspect_json(&img);
    let l = &ours["layout"];
    assert_eq!(l["kind"], "ubuntu-cloud", "{ours}");
    assert!(l["boot"].is_null(), "the seed goes into the root: {l}");
    assert_eq!(l["root"], 1);
    let types: Vec<&str> = ours["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["type_name"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(
        types,
        [
            "Linux filesystem",
            "BIOS boot",
            "EFI System",
            "Linux extended boot"
        ],
        "{ours}"
    );
    let human = hi_ok(&["inspect", img.to_str().unwrap()]);
    assert!(human.contains("Ubuntu cloud image"), "{human}");
}
