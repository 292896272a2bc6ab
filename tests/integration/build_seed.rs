//! `build --seed-only`: `NODE-cidata.img`, a FAT disk labelled CIDATA with
//! the node's cloud-init seed — judged by fsck.fat, blkid, mtools,
//! `cloud-init schema`, `netplan generate` and PyYAML; everything the build
//! would write into the image is in its user-data; nodes that cannot have
//! a seed are refused with nothing written.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::build_vm::{cloud_init_schema_ok, netplan_generate_ok, yaml};
use crate::util::{assert_fails, bin, fixture, run_ok};

const KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMxSAMby/XGYsjcC5K1MDkK2b2DTWIdw+3mOB8HYPwp7 alice@laptop";

fn profile(dir: &Path, base: &Path) -> PathBuf {
    let text = format!(
        "defaults:
  image:
    os: ubuntu-24.04
    path: {}
  board: vm
  network:
    gateway: 192.168.50.1
  users:
    - name: alice
      sudo: nopasswd
      ssh_keys:
        - {KEY}
nodes:
  - hostname: vm1
    network:
      address: 192.168.50.11/24
      mac: 52:54:00:aa:bb:01
",
        base.display()
    );
    let p = dir.join("homelab.yaml");
    std::fs::write(&p, text).unwrap();
    p
}

fn seed_only(profile: &Path, out: &Path) -> std::process::Output {
    bin()
        .arg("--profile")
        .arg(profile)
        .args(["build", "--all", "--seed-only", "--out"])
        .arg(out)
        .output()
        .unwrap()
}

fn mtype(img: &Path, name: &str) -> String {
    let out = run_ok(
        Command::new("mtype")
            .env("MTOOLS_SKIP_CHECK", "1")
            .arg("-i")
            .arg(img)
            .arg(format!("::{name}")),
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn a_seed_disk_is_a_clean_cidata_fat_whose_user_data_carries_the_first_boot_files() {
    let tmp = tempfile::tempdir().unwrap();
    // The base is never read: a Raspberry Pi image, which a vm build would
    // refuse, does not matter here.
    let p = profile(tmp.path(), &fixture("ubuntu-raspi.img"));
    let out = tmp.path().join("out");
    let o = seed_only(&p, &out);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let img = out.join("vm1-cidata.img");
    let meta = std::fs::metadata(&img).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777,
        0o600
    );
    assert!(meta.len() <= 4 << 20, "{} bytes", meta.len());
    assert!(!out.join("vm1.img").exists());
    assert!(out.join("known_hosts").exists());
    run_ok(Command::new("fsck.fat").arg("-n").arg(&img));
    let blkid = run_ok(Command::new("blkid").args(["-o", "export"]).arg(&img));
    let blkid = String::from_utf8_lossy(&blkid.stdout);
    assert!(blkid.contains("LABEL=CIDATA\n"), "{blkid}");
    assert!(blkid.contains("TYPE=vfat\n"), "{blkid}");

    let user_data = mtype(&img, "user-data");
    assert!(user_data.starts_with("#cloud-config\n"));
    cloud_init_schema_ok(&user_data);
    let ud = yaml(&user_data);
    let paths: Vec<&str> = ud["write_files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    for want in [
        "/etc/ssh/homelab/ssh_host_ed25519_key",
        "/usr/local/sbin/homelab-firstboot",
        "/etc/systemd/system/homelab-firstboot.service",
    ] {
        assert!(paths.contains(&want), "{want} not in {paths:?}");
    }
    let key = ud["write_files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == "/etc/ssh/homelab/ssh_host_ed25519_key")
        .unwrap();
    assert_eq!(key["permissions"], "0600");
    // The host key is the one known_hosts names.
    let known = std::fs::read_to_string(out.join("known_hosts")).unwrap();
    let public = ud["write_files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == "/etc/ssh/homelab/ssh_host_ed25519_key.pub")
        .unwrap()["content"]
        .as_str()
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_owned();
    assert!(known.contains(&public), "{known}");
    let runcmd = ud["runcmd"].to_string();
    assert!(
        runcmd.contains(r#"["systemctl","start","--no-block","homelab-firstboot.service"]"#),
        "{runcmd}"
    );
    assert!(runcmd.contains(r#"["ln","-sfn","#), "{runcmd}");

    let meta_data = yaml(&mtype(&img, "meta-data"));
    assert_eq!(meta_data["local-hostname"], "vm1");
    let net_text = mtype(&img, "network-config");
    let net = yaml(&net_text);
    assert_eq!(
        net["network"]["ethernets"]["eth0"]["match"]["macaddress"],
        "52:54:00:aa:bb:01"
    );
    netplan_generate_ok(&net_text);

    // The same profile and state give the same bytes.
    let first = std::fs::read(&img).unwrap();
    let o = seed_only(&p, &out);
    assert!(o.status.success());
    assert_eq!(std::fs::read(&img).unwrap(), first);
}

#[test]
fn an_armbian_node_has_no_seed_and_nothing_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let p = crate::util::example_profile(
        tmp.path(),
        "armbian-rock5b.yaml",
        None,
        &fixture("armbian-single-gpt.img"),
    );
    let out = tmp.path().join("out");
    let o = seed_only(&p, &out);
    assert_fails(
        &o,
        1,
        &["rock1", "armbian", "no cloud-init", "without --seed-only"],
    );
    assert!(!out.join("rock1-cidata.img").exists());
    assert!(!out.join("known_hosts").exists());
}

#[test]
fn a_k3s_node_is_refused_because_its_binary_does_not_fit_a_seed() {
    let tmp = tempfile::tempdir().unwrap();
    let p = crate::util::example_profile(
        tmp.path(),
        "k3s-pi4.yaml",
        None,
        &fixture("ubuntu-raspi.img"),
    );
    let out = tmp.path().join("out");
    let o = seed_only(&p, &out);
    assert_fails(&o, 1, &["too large for a seed", "without --seed-only"]);
    assert!(std::fs::read_dir(&out).map_or(true, |mut d| d.next().is_none()));
}
