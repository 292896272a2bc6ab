//! The `flash` command itself: its forms (`--all --to` onto three disks at
//! once, a node with no built image built straight onto its disk), its
//! safety rules as `flash` applies them (through a fake sysfs tree, where
//! every refusal must come before anything is opened), and its refusals
//! of incomplete command lines. Disks are loop devices over files
//! pre-filled with 0xA5; each test that needs them says why it skips.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::bmap_dirty::{
    DIRTY, Loop, assert_mapped_ranges_equal, bmap_ranges, dirty_file, no_loop_devices,
};
use crate::build::{build_ok, profile};
use crate::flash_fake_sys::workstation;
use crate::util::{bin, extract_partition, fixture, hi, our_partition, run_ok};

fn err_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The card on `dev` holds `img`'s mapped ranges, kept its old bytes
/// elsewhere, has a valid partition table, clean filesystems, and reads
/// as `node` through our own `inspect`.
fn assert_card_holds(img: &Path, dev: &Path, node: &str, tmp: &Path) {
    let mapped = assert_mapped_ranges_equal(img, dev);
    let (_, len) = bmap_ranges(&PathBuf::from(format!("{}.bmap", img.display())));
    let free = (0..len / 4096)
        .find(|b| !mapped.contains(b))
        .expect("an unmapped block");
    let mut block = vec![0u8; 4096];
    std::fs::File::open(dev)
        .unwrap()
        .read_exact_at(&mut block, free * 4096)
        .unwrap();
    assert!(
        block.iter().all(|&b| b == DIRTY),
        "{node}: unmapped block {free} was written"
    );
    let out = run_ok(Command::new("sfdisk").arg("--verify").arg(dev));
    assert!(String::from_utf8_lossy(&out.stdout).contains("No errors detected"));
    let (boot, boot_len) = our_partition(dev, 1);
    let (root, root_len) = our_partition(dev, 2);
    let fat = tmp.join(format!("{node}-boot.fat"));
    let ext = tmp.join(format!("{node}-root.ext4"));
    extract_partition(dev, boot, boot_len, &fat);
    extract_partition(dev, root, root_len, &ext);
    crate::ext4_support::assert_fsck_clean(&ext, &format!("{node} root on the card"));
    run_ok(Command::new("fsck.fat").arg("-n").arg(&fat));
    // The node's own seed (cloud-init sets the hostname at first boot).
    let out = hi(&["cat", dev.to_str().unwrap(), "system-boot", "meta-data"]);
    let seed = String::from_utf8_lossy(&out.stdout);
    assert!(seed.contains(&format!("local-hostname: {node}")), "{seed}");
}

#[test]
fn flash_all_writes_three_disks_at_once_building_the_unbuilt_nodes_straight_onto_them() {
    if let Some(why) = no_loop_devices() {
        eprintln!("skipped: needs loop devices (root): {why}");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let p = profile(
        tmp.path(),
        "pi4-microcloud.yaml",
        &fixture("ubuntu-raspi.img"),
    );
    let out = tmp.path().join("out");
    // pi1 is built; pi2 and pi3 are not, so they go straight to their disks.
    build_ok(&p, &["--node", "pi1", "--out", out.to_str().unwrap()]);
    let len = std::fs::metadata(out.join("pi1.img")).unwrap().len();
    let cards: Vec<(String, PathBuf, Loop)> = ["pi1", "pi2", "pi3"]
        .iter()
        .map(|n| {
            let backing = tmp.path().join(format!("card-{n}"));
            dirty_file(&backing, len);
            let l = Loop::attach(&backing);
            (n.to_string(), backing, l)
        })
        .collect();
    let to: Vec<String> = cards
        .iter()
        .map(|(n, _, l)| format!("{n}={}", l.dev.display()))
        .collect();
    let r = bin()
        .arg("--profile")
        .arg(&p)
        .args(["flash", "--all", "--yes", "--json", "--eject", "--out"])
        .arg(&out)
        .arg("--to")
        .arg(to.join(","))
        .output()
        .unwrap();
    assert!(r.status.success(), "{}", err_of(&r));
    assert!(
        !out.join("pi2.img").exists(),
        "pi2 was built as a file first"
    );
    // Every stdout line is a JSON event; each node started, was written,
    // verified (files compared) and finished.
    let events: Vec<serde_json::Value> = String::from_utf8_lossy(&r.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l:?}: {e}")))
        .collect();
    for (node, _, l) in &cards {
        for kind in ["start", "written", "verified", "done"] {
            assert!(
                events.iter().any(|e| e["event"] == kind
                    && e["node"] == node.as_str()
                    && e["device"] == l.dev.to_str().unwrap()),
                "no {kind} event for {node}: {events:?}"
            );
        }
        let verified = events
            .iter()
            .find(|e| e["event"] == "verified" && e["node"] == node.as_str())
            .unwrap();
        assert!(verified["files"].as_u64().unwrap() > 10, "{verified}");
        // A loop device has nothing to power off; it says so.
        let ejected = events
            .iter()
            .find(|e| e["event"] == "ejected" && e["node"] == node.as_str())
            .unwrap();
        assert!(
            ejected["how"]
                .as_str()
                .unwrap()
                .contains("nothing to eject"),
            "{ejected}"
        );
    }
    // The unbuilt nodes' disks hold what `build` makes of them now (the
    // state kept by the flash, the same epoch): byte for byte where mapped.
    let again = tmp.path().join("again");
    build_ok(
        &p,
        &[
            "--node",
            "pi2",
            "--node",
            "pi3",
            "--out",
            again.to_str().unwrap(),
        ],
    );
    for (node, _, l) in &cards {
        let img = if node == "pi1" {
            out.join("pi1.img")
        } else {
            again.join(format!("{node}.img"))
        };
        assert_card_holds(&img, &l.dev, node, tmp.path());
    }
    assert!(out.join("known_hosts").exists());
}

/// `flash IMAGE DEVICE --yes` against the fake workstation tree.
fn flash_in_fake_tree(device: &str, extra: &[&str]) -> (Output, PathBuf, tempfile::TempDir) {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    workstation(&root);
    let img = crate::util::copy_fixture("armbian-single-mbr.img", tmp.path());
    let out = bin()
        .arg("flash")
        .arg(&img)
        .arg(device)
        .arg("--yes")
        .args(extra)
        .env("HOMELAB_SYSROOT", &root)
        .env("HOMELAB_CACHE_DIR", tmp.path().join("cache"))
        .output()
        .unwrap();
    (out, img, tmp)
}

#[test]
fn flash_refuses_by_rule_before_opening_anything() {
    for (device, extra, want) in [
        (
            "/dev/nvme0n1",
            &["--allow-internal"][..],
            "rule system-disk",
        ),
        ("/dev/sdc", &[][..], "rule mounted"),
        ("/dev/sdd", &[][..], "rule swap"),
        ("/dev/sda", &[][..], "--allow-internal"),
        ("/dev/sde", &[][..], "rule holder"),
        ("/dev/mmcblk1", &[][..], "rule read-only"),
        ("/dev/sdg", &[][..], "rule no-medium"),
    ] {
        let (out, img, _tmp) = flash_in_fake_tree(device, extra);
        let err = err_of(&out);
        assert_eq!(out.status.code(), Some(1), "{device}: {err}");
        assert!(err.contains(device), "{err}");
        assert!(err.contains(want), "{device}: {want:?} missing: {err}");
        assert!(err.contains("nothing was written"), "{err}");
        let before = std::fs::read(fixture("armbian-single-mbr.img")).unwrap();
        assert!(std::fs::read(&img).unwrap() == before, "the image changed");
    }
    // A disk every rule accepts gets as far as opening, which a test tree
    // cannot do: it says so, and writes nothing.
    let (out, _, _tmp) = flash_in_fake_tree("/dev/sdb", &[]);
    let err = err_of(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("test tree"), "{err}");
    assert!(err.contains("nothing was written"), "{err}");
}

#[test]
fn flash_needs_a_device_with_yes_and_a_terminal_without_it() {
    let tmp = tempfile::tempdir().unwrap();
    let img = crate::util::copy_fixture("armbian-single-mbr.img", tmp.path());
    let out = bin().arg("flash").arg(&img).arg("--yes").output().unwrap();
    let err = err_of(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("--yes needs the DEVICE"), "{err}");
    // No terminal to ask on (the test's stdin is not one) and no --yes.
    let out = bin()
        .arg("flash")
        .arg(&img)
        .arg("/dev/loop0")
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let err = err_of(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("no terminal to ask on"), "{err}");
    assert!(err.contains("--yes"), "{err}");
    // --all names a disk for every node of the profile.
    let p = profile(
        tmp.path(),
        "pi4-microcloud.yaml",
        &fixture("ubuntu-raspi.img"),
    );
    let out = bin()
        .arg("--profile")
        .arg(&p)
        .args(["flash", "--all", "--yes", "--to", "pi1=/dev/loop0"])
        .output()
        .unwrap();
    let err = err_of(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("no disk named for pi2, pi3"), "{err}");
}

#[test]
fn without_a_device_on_a_terminal_flash_offers_the_candidates_and_wants_the_name_typed() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    workstation(&root);
    let img = crate::util::copy_fixture("armbian-single-mbr.img", tmp.path());
    let run = |answers: &str| -> String {
        // `script` gives the command a terminal; our answers are typed
        // into it.
        let cmd = format!(
            "{} flash {}",
            env!("CARGO_BIN_EXE_homelab-image"),
            img.display()
        );
        let mut child = Command::new("script")
            .args(["-qec", &cmd, "/dev/null"])
            .env("HOMELAB_SYSROOT", &root)
            .env("HOMELAB_CACHE_DIR", tmp.path().join("cache"))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("script (util-linux)");
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(answers.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        String::from_utf8_lossy(&out.stdout).replace('\r', "")
    };
    // Enter: stop. The list shows the candidates only (USB and SD, not
    // the system disk, the mounted stick or the read-only card), each with
    // size, transport and model.
    let said = run("\n");
    for want in [
        "Which disk should armbian-single-mbr.img be written to?",
        "/dev/mmcblk0  32 GiB  mmc  SD32G",
        "/dev/sdb  240 GiB  usb  Samsung Portable SSD T7",
        "/dev/sdf  1 TiB  usb  WD Elements 25A3",
        "error: stopped; nothing was written",
    ] {
        assert!(said.contains(want), "{want:?} missing: {said}");
    }
    for never in ["/dev/nvme0n1", "/dev/sdc", "/dev/mmcblk1", "/dev/loop"] {
        assert!(!said.contains(never), "{never} offered: {said}");
    }
    // A wrong name typed back: not confirmed.
    let said = run("2\nsdc\n");
    assert!(said.contains("Type sdb to go on"), "{said}");
    assert!(
        said.contains("/dev/sdb not confirmed; nothing was written"),
        "{said}"
    );
    // The right one: on to opening it (which a test tree cannot).
    let said = run("2\nsdb\n");
    assert!(said.contains("test tree"), "{said}");
    // A disk above 512 GiB says why it asks.
    let said = run("3\nsdf\n");
    assert!(said.contains("rule large-disk"), "{said}");
    assert!(said.contains("test tree"), "{said}");
}

#[test]
fn without_write_permission_flash_says_how_to_get_it_before_anything_else() {
    if let Some(why) = no_loop_devices() {
        eprintln!("skipped: needs loop devices (root): {why}");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let img = crate::util::copy_fixture("armbian-single-mbr.img", tmp.path());
    // The image readable by nobody, so only the disk is out of reach.
    std::fs::set_permissions(
        tmp.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    std::fs::set_permissions(&img, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let len = std::fs::metadata(&img).unwrap().len();
    let backing = tmp.path().join("card");
    dirty_file(&backing, len);
    let card = Loop::attach(&backing);
    let out = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .arg(env!("CARGO_BIN_EXE_homelab-image"))
        .arg("flash")
        .arg(&img)
        .arg(&card.dev)
        .arg("--yes")
        .env("HOMELAB_CACHE_DIR", "/nonexistent")
        .output()
        .expect("setpriv (util-linux)");
    let err = err_of(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("no permission to write it"), "{err}");
    assert!(err.contains("sudo"), "{err}");
    assert!(err.contains("nothing was written"), "{err}");
    drop(card);
    let bytes = std::fs::read(&backing).unwrap();
    assert!(bytes.iter().all(|&b| b == DIRTY), "the disk was written");
}

#[test]
fn a_node_built_straight_to_its_disk_reads_its_base_against_the_sums_the_cache_keeps() {
    if let Some(why) = no_loop_devices() {
        eprintln!("skipped: needs loop devices (root): {why}");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let (_, xz) = crate::build_sums::bases(tmp.path());
    let p = profile(tmp.path(), "pi4-microcloud.yaml", &xz);
    let cache = tmp.path().join("cache");
    let out = tmp.path().join("out");
    let with_cache = |args: &[&str]| {
        let mut c = bin();
        c.env("HOMELAB_CACHE_DIR", &cache)
            .arg("--profile")
            .arg(&p)
            .args(args);
        c
    };
    // A build of pi1 decodes the base into the cache and keeps the sums of
    // the ranges no node changes.
    run_ok(&mut with_cache(&[
        "build",
        "--node",
        "pi1",
        "--out",
        out.to_str().unwrap(),
    ]));
    let len = std::fs::metadata(out.join("pi1.img")).unwrap().len();
    let backing = tmp.path().join("card");
    dirty_file(&backing, len);
    let card = Loop::attach(&backing);
    let r = run_ok(
        with_cache(&[
            "flash",
            "--node",
            "pi2",
            "--yes",
            "--out",
            out.to_str().unwrap(),
        ])
        .arg(&card.dev),
    );
    let said = String::from_utf8_lossy(&r.stdout);
    let known: Vec<u64> = said
        .split("built straight to the disk; ")
        .nth(1)
        .unwrap_or_else(|| panic!("{said}"))
        .split_whitespace()
        .take(3)
        .filter_map(|w| w.parse().ok())
        .collect();
    assert_eq!(known.len(), 2, "{said}");
    assert!(known[0] > 0 && known[0] < known[1], "{said}");
    // The disk holds what `build` makes of pi2, byte for byte where mapped.
    let again = tmp.path().join("again");
    run_ok(&mut with_cache(&[
        "build",
        "--node",
        "pi2",
        "--out",
        again.to_str().unwrap(),
    ]));
    assert_card_holds(&again.join("pi2.img"), &card.dev, "pi2", tmp.path());
}
