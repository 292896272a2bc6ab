//! `build` of `board: vm` nodes on the Ubuntu cloud-image fixture
//! (`ubuntu-cloud.img`: GPT p14 BIOS boot, p15 ESP, p16 ext4 BOOT, p1 ext4
//! cloudimg-rootfs): the NoCloud seed lands in the root file system where
//! ds-identify looks, its network-config matches the NIC by MAC, and the
//! image file is grown to `vm.disk_size` with its backup GPT moved to the
//! new end — judged by sfdisk, e2fsck, fsck.fat, bmaptool, PyYAML,
//! `cloud-init schema` and `netplan generate`; a bmap copy laid over a
//! pattern-filled target still has a valid GPT at the end.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::build::{build, build_ok, debugfs_cat, judge};
use crate::util::{assert_fails, fixture, run_ok};

const KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMxSAMby/XGYsjcC5K1MDkK2b2DTWIdw+3mOB8HYPwp7 alice@laptop";

/// A profile of two amd64 VMs on `base`: vm1 with its MAC given, vm2 with
/// one derived from its hostname; `vm:` in defaults, vm1 overriding.
fn vm_profile(dir: &Path, base: &Path, disk_size: &str) -> PathBuf {
    let text = format!(
        "defaults:
  image:
    os: ubuntu-24.04
    path: {base}
  board: vm
  vm:
    memory: 2GiB
    disk_size: {disk_size}
  network:
    gateway: 192.168.50.1
    dns: [192.168.50.1]
  users:
    - name: alice
      groups: [sudo]
      sudo: nopasswd
      ssh_keys:
        - {KEY}
nodes:
  - hostname: vm1
    network:
      address: 192.168.50.11/24
      mac: 52:54:00:12:34:56
    vm:
      cores: 4
      vmid: 201
  - hostname: vm2
    network:
      address: 192.168.50.12/24
",
        base = base.display()
    );
    let p = dir.join("homelab.yaml");
    std::fs::write(&p, text).unwrap();
    p
}

/// `text` as PyYAML reads it.
pub(crate) fn yaml(text: &str) -> serde_json::Value {
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(f.path(), text).unwrap();
    let out = run_ok(
        Command::new("python3")
            .arg("-c")
            .arg("import sys, json, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))")
            .arg(f.path()),
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The mapped ranges of `img.bmap` copied from `img` onto a file of the
/// same size filled with a non-zero pattern: what a card with an old life
/// holds after `bmaptool copy`.
fn bmap_onto_pattern(img: &Path, dst: &Path) {
    let script = r#"
import sys, xml.etree.ElementTree as ET
img, bmap, dst = sys.argv[1:4]
root = ET.parse(bmap).getroot()
bs = int(root.find("BlockSize").text)
size = int(root.find("ImageSize").text)
pattern = bytes([0xA5, 0x5A, 0x3C, 0xC3]) * (1 << 18)
with open(dst, "wb") as out:
    left = size
    while left:
        n = min(left, len(pattern))
        out.write(pattern[:n])
        left -= n
with open(img, "rb") as src, open(dst, "r+b") as out:
    for r in root.find("BlockMap").findall("Range"):
        a, _, b = r.text.strip().partition("-")
        first, last = int(a), int(b or a)
        src.seek(first * bs)
        out.seek(first * bs)
        out.write(src.read((last - first + 1) * bs))
"#;
    run_ok(
        Command::new("python3")
            .arg("-c")
            .arg(script)
            .arg(img)
            .arg(format!("{}.bmap", img.display()))
            .arg(dst),
    );
}

/// What sfdisk says of each partition, without the device's name.
fn partitions(table: &serde_json::Value) -> Vec<serde_json::Value> {
    let mut parts = table["partitiontable"]["partitions"]
        .as_array()
        .unwrap()
        .clone();
    for p in &mut parts {
        p.as_object_mut().unwrap().remove("node");
    }
    parts
}

#[test]
fn vm_nodes_get_the_seed_in_the_root_fs_and_a_grown_disk_that_passes_every_oracle() {
    let tmp = tempfile::tempdir().unwrap();
    let base = fixture("ubuntu-cloud.img");
    let base_len = std::fs::metadata(&base).unwrap().len();
    let p = vm_profile(tmp.path(), &base, "1GiB");
    let out = tmp.path().join("out");
    build_ok(&p, &["--sha256", "--all", "--out", out.to_str().unwrap()]);

    for (node, mac) in [("vm1", Some("52:54:00:12:34:56")), ("vm2", None)] {
        let img = out.join(format!("{node}.img"));
        // Grown to vm.disk_size, sparse: the new space is a hole.
        let meta = std::fs::metadata(&img).unwrap();
        assert_eq!(meta.len(), 1 << 30, "{node}");
        assert!(
            std::os::unix::fs::MetadataExt::blocks(&meta) * 512 < 2 * base_len,
            "{node}: the grown image is not sparse"
        );
        if node == "vm2" {
            // Every oracle (sfdisk, fsck, bmaptool, sha256sum) takes a
            // pass over the whole GiB: once is enough.
            judge(&img, tmp.path());
        }
        // sfdisk sees the backup table at the new end and the space free.
        let verify = run_ok(Command::new("sfdisk").arg("--verify").arg(&img));
        let said = String::from_utf8_lossy(&verify.stdout).to_string()
            + &String::from_utf8_lossy(&verify.stderr);
        assert!(!said.contains("mismatch"), "{node}: {said}");
        let table = crate::util::sfdisk_json(&img);
        let pt = &table["partitiontable"];
        assert_eq!(
            pt["lastlba"].as_u64(),
            Some((1u64 << 30) / 512 - 34),
            "{pt}"
        );
        // The partitions did not move: growpart extends p1 on first boot.
        let base_table = crate::util::sfdisk_json(&base);
        assert_eq!(partitions(&table), partitions(&base_table), "{node}");

        // The seed, where cloud-init's ds-identify looks, root-only.
        let dir = "/var/lib/cloud/seed/nocloud";
        let user_data = debugfs_cat(&img, 1, &format!("{dir}/user-data"), tmp.path());
        assert!(user_data.starts_with("#cloud-config\n"), "{user_data}");
        let ud = yaml(&user_data);
        assert!(ud.to_string().contains(KEY), "{ud}");
        let meta_data = yaml(&debugfs_cat(
            &img,
            1,
            &format!("{dir}/meta-data"),
            tmp.path(),
        ));
        assert_eq!(meta_data["local-hostname"], node, "{meta_data}");
        let net = yaml(&debugfs_cat(
            &img,
            1,
            &format!("{dir}/network-config"),
            tmp.path(),
        ));
        let eth = &net["network"]["ethernets"]["eth0"];
        let want_mac = mac.map_or_else(
            || {
                let m = eth["match"]["macaddress"].as_str().unwrap().to_owned();
                assert!(m.starts_with("02:"), "derived MAC {m}");
                m
            },
            str::to_owned,
        );
        assert_eq!(eth["match"]["macaddress"], want_mac.as_str(), "{net}");
        assert_eq!(eth["set-name"], "eth0", "{net}");
        let stat = run_ok(
            Command::new("debugfs")
                .arg("-R")
                .arg(format!("stat {dir}/user-data"))
                .arg(format!(
                    "{}?offset={}",
                    img.display(),
                    crate::util::our_partition(&img, 1).0
                )),
        );
        let stat = String::from_utf8_lossy(&stat.stdout);
        assert!(stat.contains("Mode:  0600"), "{stat}");
        // The first-boot unit is in place, as on a Pi.
        let unit = debugfs_cat(
            &img,
            1,
            "/etc/systemd/system/homelab-firstboot.service",
            tmp.path(),
        );
        assert!(unit.contains("ExecStart=/usr/local/sbin/homelab-firstboot"));
        // Nothing on the ESP: a cloud image's seed is not on a FAT.
        let i = img.to_str().unwrap();
        let esp = crate::util::hi(&["cat", i, "15", "/user-data"]);
        assert!(!esp.status.success(), "user-data on the ESP");

        if node == "vm1" {
            continue;
        }
        // A bmap copy onto a card with an old life: the backup GPT at the
        // end comes from the image, not from the pattern.
        let copy = tmp.path().join("pattern.img");
        bmap_onto_pattern(&img, &copy);
        run_ok(Command::new("sfdisk").arg("--verify").arg(&copy));
        let copied = crate::util::sfdisk_json(&copy);
        assert_eq!(partitions(&copied), partitions(&table));
        assert_eq!(copied["partitiontable"]["lastlba"], pt["lastlba"]);
        std::fs::remove_file(&copy).unwrap();
    }
    // cloud-init and netplan accept what was written.
    cloud_init_schema_ok(&debugfs_cat(
        &out.join("vm2.img"),
        1,
        "/var/lib/cloud/seed/nocloud/user-data",
        tmp.path(),
    ));
    netplan_generate_ok(&debugfs_cat(
        &out.join("vm2.img"),
        1,
        "/var/lib/cloud/seed/nocloud/network-config",
        tmp.path(),
    ));
}

/// `cloud-init schema` accepts `user_data`.
pub(crate) fn cloud_init_schema_ok(user_data: &str) {
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(f.path(), user_data).unwrap();
    let schema = Command::new("cloud-init")
        .args(["schema", "--config-file"])
        .arg(f.path())
        .output()
        .unwrap();
    assert!(
        schema.status.success(),
        "{}",
        String::from_utf8_lossy(&schema.stderr)
    );
}

/// `netplan generate` accepts `network_config` as cloud-init writes it.
pub(crate) fn netplan_generate_ok(network_config: &str) {
    let sandbox = tempfile::tempdir().unwrap();
    let netplan_dir = sandbox.path().join("etc/netplan");
    std::fs::create_dir_all(&netplan_dir).unwrap();
    let nc = netplan_dir.join("50-cloud-init.yaml");
    std::fs::write(&nc, network_config).unwrap();
    std::fs::set_permissions(&nc, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    run_ok(
        Command::new("netplan")
            .arg("generate")
            .arg("--root-dir")
            .arg(sandbox.path()),
    );
}

#[test]
fn a_disk_size_below_the_image_is_refused_and_nothing_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let base = fixture("ubuntu-cloud.img");
    // The fixture is 48 MiB; DiskSize's floor is 1 GiB, so grow the base
    // past it first (sparse) to have a size below the image.
    let big = tmp.path().join("big-cloud.img");
    std::fs::copy(&base, &big).unwrap();
    let f = std::fs::OpenOptions::new().write(true).open(&big).unwrap();
    f.set_len(3 << 30).unwrap();
    drop(f);
    let before = crate::util::read_at(&big, 0, 1 << 20);
    let p = vm_profile(tmp.path(), &big, "2GiB");
    let out = tmp.path().join("out");
    let o = build(&p, &["--node", "vm1", "--out", out.to_str().unwrap()]);
    assert_fails(&o, 1, &["big-cloud.img", "3 GiB", "2 GiB"]);
    assert!(!out.join("vm1.img").exists());
    assert_eq!(std::fs::metadata(&big).unwrap().len(), 3 << 30);
    assert_eq!(crate::util::read_at(&big, 0, 1 << 20), before);
}

#[test]
fn a_vm_node_on_a_raspberry_pi_image_is_refused_naming_the_cloud_image() {
    let tmp = tempfile::tempdir().unwrap();
    let p = vm_profile(tmp.path(), &fixture("ubuntu-raspi.img"), "1GiB");
    let out = tmp.path().join("out");
    let o = build(&p, &["--node", "vm1", "--out", out.to_str().unwrap()]);
    assert_fails(
        &o,
        1,
        &["ubuntu-raspi.img", "cloud image", "cloudimg-rootfs"],
    );
    assert!(!out.join("vm1.img").exists());
}

#[test]
fn an_image_built_for_another_architecture_is_refused_naming_both() {
    let tmp = tempfile::tempdir().unwrap();
    let base = crate::util::copy_fixture("ubuntu-cloud.img", tmp.path());
    // An AArch64 ELF header as /usr/bin/env (e_machine 183 at byte 18).
    let mut elf = vec![0u8; 64];
    elf[..6].copy_from_slice(b"\x7fELF\x02\x01");
    elf[18..20].copy_from_slice(&183u16.to_le_bytes());
    let env = tmp.path().join("env");
    std::fs::write(&env, &elf).unwrap();
    let at = crate::util::our_partition(&base, 1).0;
    let fs = format!("{}?offset={at}", base.display());
    run_ok(
        Command::new("debugfs")
            .args(["-w", "-R", "rm /usr/bin/env"])
            .arg(&fs),
    );
    run_ok(
        Command::new("debugfs")
            .args(["-w", "-R"])
            .arg(format!("write {} /usr/bin/env", env.display()))
            .arg(&fs),
    );
    let p = vm_profile(tmp.path(), &base, "1GiB");
    let out = tmp.path().join("out");
    let o = build(&p, &["--node", "vm1", "--out", out.to_str().unwrap()]);
    assert_fails(&o, 1, &["is an arm64 image", "vm1 is amd64", "arch: arm64"]);
    assert!(!out.join("vm1.img").exists());
    // Said to be arm64, the same node builds.
    let text = std::fs::read_to_string(&p)
        .unwrap()
        .replace("  board: vm\n", "  board: vm\n  arch: arm64\n");
    std::fs::write(&p, text).unwrap();
    build_ok(&p, &["--node", "vm1", "--out", out.to_str().unwrap()]);
}
