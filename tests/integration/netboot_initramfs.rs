//! `netboot::initramfs` against the initrds of the e2e replicas
//! (scripts/e2e/make-replica, cached in $HOMELAB_E2E_CACHE or
//! target/e2e-cache): the Ubuntu one, built by initramfs-tools with
//! nbd-client's hook, must be found NBD-capable; the Armbian one, without
//! nbd-client, must not. The initrds are taken out of the images by mtools
//! and debugfs. Skipped, saying so, when no replica has been built
//! (scripts/e2e-boot builds them; they take ~20 min).

use std::path::{Path, PathBuf};
use std::process::Command;

use homelab_image::netboot::initramfs::{NbdSupport, nbd_support};

use crate::util::{run_ok, sfdisk_json};

/// The newest complete replica directory of `kind`, if any.
fn replica(kind: &str) -> Option<PathBuf> {
    let cache = std::env::var_os("HOMELAB_E2E_CACHE").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("target/e2e-cache"),
        PathBuf::from,
    );
    let mut found: Vec<PathBuf> = std::fs::read_dir(&cache)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("{kind}-")) && !n.ends_with(".tmp"))
                && p.join(".complete").exists()
        })
        .collect();
    found.sort_by_key(|p| p.metadata().and_then(|m| m.modified()).ok());
    let dir = found.pop();
    if dir.is_none() {
        eprintln!(
            "skipping: no {kind} e2e replica in {} (scripts/e2e/make-replica {kind} builds one)",
            cache.display()
        );
    }
    dir
}

/// KEY=value lines of the replica's replica.env.
fn env_value(dir: &Path, key: &str) -> String {
    let text = std::fs::read_to_string(dir.join("replica.env")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")))
        .unwrap_or_else(|| panic!("no {key} in {}/replica.env", dir.display()))
        .to_owned()
}

fn part_start(image: &Path, n: usize) -> u64 {
    let t = &sfdisk_json(image)["partitiontable"];
    let sector = t["sectorsize"].as_u64().unwrap_or(512);
    t["partitions"][n - 1]["start"].as_u64().unwrap() * sector
}

#[test]
fn ubuntu_replica_initrd_can_mount_an_nbd_root() {
    let Some(dir) = replica("ubuntu") else { return };
    let image = dir.join("disk.img");
    let boot: usize = env_value(&dir, "BOOT_PART").parse().unwrap();
    let fat = format!("{}@@{}", image.display(), part_start(&image, boot));
    let out = run_ok(Command::new("mcopy").env("MTOOLS_SKIP_CHECK", "1").args([
        "-n",
        "-i",
        &fat,
        "::initrd.img",
        "-",
    ]));
    assert!(
        out.stdout.len() > 1 << 20,
        "initrd.img is {} bytes",
        out.stdout.len()
    );
    let s = nbd_support(&mut &out.stdout[..]).unwrap();
    assert_eq!(
        s,
        NbdSupport {
            nbd_client: true,
            boot_script: true,
            nbd_module: true
        },
        "{:?}",
        s.describe_missing()
    );
}

#[test]
fn armbian_replica_initrd_lacks_nbd_client_and_says_so() {
    let Some(dir) = replica("armbian") else {
        return;
    };
    let image = dir.join("disk.img");
    let root: usize = env_value(&dir, "ROOT_PART").parse().unwrap();
    let kver = env_value(&dir, "KVER");
    let tmp = tempfile::tempdir().unwrap();
    let initrd = tmp.path().join("initrd.img");
    run_ok(
        Command::new("debugfs")
            .arg("-R")
            .arg(format!("dump /boot/initrd.img-{kver} {}", initrd.display()))
            .arg(format!(
                "{}?offset={}",
                image.display(),
                part_start(&image, root)
            )),
    );
    let data = std::fs::read(&initrd).unwrap();
    assert!(data.len() > 1 << 20, "initrd is {} bytes", data.len());
    let s = nbd_support(&mut &data[..]).unwrap();
    assert!(!s.nbd_client && !s.boot_script, "{s:?}");
    let text = s.describe_missing().unwrap();
    assert!(text.contains("nbd-client"), "{text}");
}
