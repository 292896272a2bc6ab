//! `firmware card` and `firmware presets`: the recovery card made from the
//! bootloader files in ubuntu-raspi.img's root filesystem (made by
//! scripts/lib/eeprom-fixture.py, see tests/fixtures/INDEX.md), judged by
//! sfdisk --verify and --json, fsck.fat -n, mtools (mdir, mcopy -i
//! IMG@@1M), debugfs (the base image's own files), sha256sum and the
//! independent EEPROM reader; then flashed with `flash` onto a loop device
//! pre-filled with 0xA5.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::bmap_dirty::{DIRTY, Loop, dirty_file, no_loop_devices};
use crate::util::{
    assert_fails, bin, extract_partition, fixture, hi_ok, run_ok, sfdisk_json, stdout_of,
};

const MIB: u64 = 1 << 20;
const EPOCH: &str = "1700000123";
/// ubuntu-raspi.img's ext4 `writable` starts at sector 83968.
const ROOT_OFFSET: u64 = 83968 * 512;
const FW: &str = "/usr/lib/firmware/raspberrypi";

/// `firmware card ... --out OUT` with a fixed SOURCE_DATE_EPOCH and no
/// profile; its output.
fn card(args: &[&str], out: &Path) -> std::process::Output {
    bin()
        .args(["--profile", "/nonexistent/homelab.yaml", "firmware", "card"])
        .args(args)
        .arg("--out")
        .arg(out)
        .env("SOURCE_DATE_EPOCH", EPOCH)
        .output()
        .unwrap()
}

fn card_ok(args: &[&str], out: &Path) {
    let o = card(args, out);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout).trim(),
        out.to_str().unwrap()
    );
}

/// A file of the base image's root filesystem, dumped by debugfs.
fn base_file(path: &str) -> Vec<u8> {
    let img = fixture("ubuntu-raspi.img");
    let spec = format!("{}?offset={ROOT_OFFSET}", img.display());
    let out = run_ok(Command::new("debugfs").args(["-R", &format!("cat {path}"), &spec]));
    out.stdout
}

/// The card's root directory as mdir lists it (short names).
fn mdir(card: &Path) -> String {
    stdout_of(
        Command::new("mdir")
            .env("MTOOLS_SKIP_CHECK", "1")
            .arg("-b")
            .arg("-i")
            .arg(format!("{}@@1M", card.display()))
            .arg("::"),
    )
}

/// A file of the card, read with mcopy.
fn mcopy(card: &Path, name: &str) -> Vec<u8> {
    run_ok(
        Command::new("mcopy")
            .env("MTOOLS_SKIP_CHECK", "1")
            .arg("-n")
            .arg("-i")
            .arg(format!("{}@@1M", card.display()))
            .arg(format!("::{name}"))
            .arg("-"),
    )
    .stdout
}

fn oracle_bootconf(bytes: &[u8], tmp: &Path) -> Vec<u8> {
    let f = tmp.join("oracle.bin");
    std::fs::write(&f, bytes).unwrap();
    run_ok(
        Command::new("python3")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/lib/eeprom-fixture.py"))
            .arg("bootconf")
            .arg(&f),
    )
    .stdout
}

fn sha256_hex(path: &Path) -> String {
    stdout_of(Command::new("sha256sum").arg(path))
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned()
}

/// The table, the FAT and the files of a card for `soc` made from
/// `release` (a path under FW) with `preset`.
fn assert_card(card: &Path, tmp: &Path, release: &str, preset: &str, recovery: Option<&str>) {
    let verify = stdout_of(Command::new("sfdisk").arg("--verify").arg(card));
    assert!(verify.contains("No errors detected"), "{verify}");
    let t = &sfdisk_json(card)["partitiontable"];
    assert_eq!(t["label"], "dos");
    let parts = t["partitions"].as_array().unwrap();
    assert_eq!(parts.len(), 1);
    assert_eq!(
        (&parts[0]["start"], &parts[0]["size"], &parts[0]["type"]),
        (&2048.into(), &524_288.into(), &"c".into())
    );
    let fat = tmp.join("p1.fat");
    extract_partition(card, 2048 * 512, 524_288 * 512, &fat);
    let fsck = run_ok(Command::new("fsck.fat").arg("-n").arg(&fat));
    let fsck_out = String::from_utf8_lossy(&fsck.stdout);
    assert!(!fsck_out.contains("uninitialized"), "{fsck_out}");
    // FAT32 with one 512-byte sector per cluster, as mkfs.fat -F 32 -s 1.
    let boot = std::fs::read(&fat).unwrap();
    assert_eq!(&boot[82..90], b"FAT32   ");
    assert_eq!(boot[13], 1, "sectors per cluster");

    let listing = mdir(card).to_lowercase();
    let mut want = vec!["readme.txt", "pieeprom.bin", "pieeprom.sig"];
    if recovery.is_some() {
        want.push("recovery.bin");
    }
    for w in &want {
        assert!(listing.contains(w), "{w} not in:\n{listing}");
    }
    assert_eq!(listing.lines().count(), want.len(), "{listing}");

    let pieeprom = mcopy(card, "pieeprom.bin");
    let original = base_file(&format!("{FW}/{release}"));
    assert_eq!(pieeprom.len(), original.len());
    let conf = homelab_image::firmware::preset(preset).unwrap().conf_text;
    assert_eq!(oracle_bootconf(&pieeprom, tmp), conf.as_bytes());
    // Only bootconf.txt and its padding differ from the release.
    let orig_file = tmp.join("original.bin");
    std::fs::write(&orig_file, &original).unwrap();
    let (start, next) = crate::firmware_eeprom::region(&orig_file, original.len());
    let first = pieeprom
        .iter()
        .zip(&original)
        .position(|(a, b)| a != b)
        .unwrap();
    let last = pieeprom
        .iter()
        .zip(&original)
        .rposition(|(a, b)| a != b)
        .unwrap();
    assert!(
        start <= first && last < next,
        "{first:#x}..={last:#x} outside {start:#x}..{next:#x}"
    );

    let local = tmp.join("pieeprom.bin");
    std::fs::write(&local, &pieeprom).unwrap();
    let sig = String::from_utf8(mcopy(card, "pieeprom.sig")).unwrap();
    assert_eq!(sig, format!("{}\nts: {EPOCH}\n", sha256_hex(&local)));

    if let Some(r) = recovery {
        assert_eq!(mcopy(card, "recovery.bin"), base_file(&format!("{FW}/{r}")));
    }
    let readme = String::from_utf8(mcopy(card, "README.txt")).unwrap();
    for needle in [
        "green LED blinks rapidly",
        preset,
        release.rsplit('/').next().unwrap(),
    ] {
        assert!(
            readme.contains(needle),
            "README lacks {needle:?}:\n{readme}"
        );
    }
    // Our own reader finds the preset on the card too.
    assert_eq!(
        hi_ok(&["firmware", "show", card.to_str().unwrap()]),
        conf,
        "firmware show of the card"
    );
}

#[test]
fn a_pi4_card_passes_fsck_and_sfdisk_and_holds_the_newest_release_with_the_preset() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("eeprom-rpi4.img");
    let base = fixture("ubuntu-raspi.img");
    card_ok(
        &[
            "--preset",
            "boot-usb-sd",
            "--board",
            "rpi4",
            "--from",
            base.to_str().unwrap(),
        ],
        &out,
    );
    // default/ holds 2024-04-15 and 2025-01-10: the newer is taken.
    assert_card(
        &out,
        tmp.path(),
        "bootloader-2711/default/pieeprom-2025-01-10.bin",
        "boot-usb-sd",
        Some("bootloader-2711/default/recovery.bin"),
    );
    // The same inputs give the same card.
    let again = tmp.path().join("again.img");
    card_ok(
        &[
            "--preset",
            "boot-usb-sd",
            "--board",
            "rpi4",
            "--from",
            base.to_str().unwrap(),
        ],
        &again,
    );
    run_ok(Command::new("cmp").arg(&out).arg(&again));
}

#[test]
fn pi5_cards_take_the_channel_asked_for_with_recovery_bin_only_where_it_is() {
    let tmp = tempfile::tempdir().unwrap();
    let base = fixture("ubuntu-raspi.img");
    let latest = tmp.path().join("latest.img");
    card_ok(
        &[
            "--preset",
            "boot-nvme-usb",
            "--board",
            "rpi5",
            "--channel",
            "latest",
            "--from",
            base.to_str().unwrap(),
        ],
        &latest,
    );
    assert_card(
        &latest,
        tmp.path(),
        "bootloader-2712/latest/pieeprom-2025-02-12.bin",
        "boot-nvme-usb",
        Some("bootloader-2712/latest/recovery.bin"),
    );
    let default = tmp.path().join("default.img");
    card_ok(
        &[
            "--preset",
            "boot-net-sd",
            "--board",
            "rpi5",
            "--from",
            base.to_str().unwrap(),
        ],
        &default,
    );
    assert_card(
        &default,
        tmp.path(),
        "bootloader-2712/default/pieeprom-2025-01-10.bin",
        "boot-net-sd",
        None,
    );
}

#[test]
fn a_base_image_without_bootloader_files_is_refused_naming_the_paths_looked_at() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("card.img");
    let base = fixture("ubuntu-raspi-2604.img");
    let o = card(
        &[
            "--preset",
            "boot-usb-sd",
            "--board",
            "rpi4",
            "--from",
            base.to_str().unwrap(),
        ],
        &out,
    );
    assert_fails(
        &o,
        1,
        &[
            "ubuntu-raspi-2604.img",
            "/lib/firmware/raspberrypi/bootloader-2711/default/",
            "/usr/lib/firmware/raspberrypi/bootloader-2711/default/",
        ],
    );
    assert!(!out.exists());
    assert_eq!(
        std::fs::read_dir(tmp.path()).unwrap().count(),
        0,
        "left files behind"
    );
}

#[test]
fn a_preset_that_does_not_fit_the_board_or_does_not_exist_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("card.img");
    let base = fixture("ubuntu-raspi.img");
    let o = card(
        &[
            "--preset",
            "boot-nvme-usb",
            "--board",
            "rpi4",
            "--from",
            base.to_str().unwrap(),
        ],
        &out,
    );
    assert_fails(&o, 1, &["boot-nvme-usb", "NVMe", "Raspberry Pi 4", "rpi5"]);
    let o = card(
        &[
            "--preset",
            "boot-typo",
            "--board",
            "rpi4",
            "--from",
            base.to_str().unwrap(),
        ],
        &out,
    );
    assert_fails(&o, 1, &["boot-typo", "boot-usb-sd"]);
    let o = card(&["--preset", "boot-usb-sd", "--board", "rpi4"], &out);
    assert_fails(&o, 1, &["--from BASE_IMAGE"]);
    assert!(!out.exists());
}

#[test]
fn firmware_presets_json_lists_every_shipped_preset_with_boards_and_order() {
    let json: serde_json::Value =
        serde_json::from_str(&hi_ok(&["firmware", "presets", "--json"])).unwrap();
    let rows = json.as_array().unwrap();
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("firmware");
    let shipped = std::fs::read_dir(&dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "conf")
        })
        .count();
    assert_eq!(rows.len(), shipped);
    for r in rows {
        let name = r["name"].as_str().unwrap();
        let text = std::fs::read_to_string(dir.join(format!("{name}.conf"))).unwrap();
        assert_eq!(r["config"], text.as_str());
        let hex = text
            .lines()
            .find_map(|l| l.strip_prefix("BOOT_ORDER="))
            .unwrap();
        assert_eq!(r["boot_order"], hex);
        let order: Vec<&str> = r["order"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(r["description"], order.join(", then "));
        assert!(
            r["boards"]
                .as_array()
                .unwrap()
                .iter()
                .all(|b| b == "rpi4" || b == "rpi5")
        );
    }
    let by_name = |n: &str| rows.iter().find(|r| r["name"] == n).unwrap();
    assert_eq!(
        by_name("boot-nvme-usb")["boards"],
        serde_json::json!(["rpi5"])
    );
    assert_eq!(
        by_name("boot-usb-sd")["boards"],
        serde_json::json!(["rpi4", "rpi5"])
    );
    assert_eq!(
        by_name("boot-usb-sd")["description"],
        "USB, then SD, then restart"
    );
    let text = hi_ok(&["firmware", "presets"]);
    assert!(
        text.lines().any(|l| l.starts_with("boot-usb-sd")
            && l.contains("rpi4, rpi5")
            && l.ends_with("USB, then SD, then restart")),
        "{text}"
    );
}

#[test]
fn the_card_flashes_onto_a_used_disk_with_flash() {
    if let Some(why) = no_loop_devices() {
        eprintln!("skipped: needs loop devices (root): {why}");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("eeprom-rpi4.img");
    let base = fixture("ubuntu-raspi.img");
    card_ok(
        &[
            "--preset",
            "boot-sd-usb",
            "--board",
            "rpi4",
            "--from",
            base.to_str().unwrap(),
        ],
        &out,
    );
    let disk = tmp.path().join("disk");
    dirty_file(&disk, 300 * MIB);
    let lo = Loop::attach(&disk);
    let o = bin()
        .arg("flash")
        .arg(&out)
        .arg(&lo.dev)
        .arg("--yes")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let verify = stdout_of(Command::new("sfdisk").arg("--verify").arg(&lo.dev));
    assert!(verify.contains("No errors detected"), "{verify}");
    let fat = tmp.path().join("flashed.fat");
    extract_partition(&lo.dev, 2048 * 512, 524_288 * 512, &fat);
    run_ok(Command::new("fsck.fat").arg("-n").arg(&fat));
    for name in ["recovery.bin", "pieeprom.bin", "pieeprom.sig", "README.txt"] {
        assert_eq!(
            mcopy(&lo.dev, name),
            mcopy(&out, name),
            "{name} on the flashed disk"
        );
    }
    // The FAT's free clusters were not written: the disk's old bytes
    // remain there (only the used blocks are mapped).
    let free = crate::util::read_at(&disk, 200 * MIB, 16);
    assert_eq!(free, vec![DIRTY; 16]);
}
