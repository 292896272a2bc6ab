//! `out/proxmox.sh` (issue 18): shellcheck and `bash -n` judge the script;
//! it is run, with `--dry-run` and for real, against stand-in `qm` and
//! `pvesh` commands that record their argv (and answer as the real ones
//! do: `qm status` fails for an absent VM, `pvesh get /cluster/nextid
//! --vmid N` fails for a taken id), and each VM's `qm create` argv is
//! asserted whole. `build` writes it for a profile with vm nodes only.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::build::build_ok;
use crate::profile_support::tempdir;
use crate::util::fixture;

const KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMxSAMby/XGYsjcC5K1MDkK2b2DTWIdw+3mOB8HYPwp7 alice@laptop";
const HASH: &str = "$6$rounds=4096$saltsalt$Wnq5yF0zQ2uVY0jBfD8p1m1dXGZ9X1Q7k6lq2m0h7mG2yqv2B2yQm5o3S8m7wqF4g5Y0cN1bS6hK9oA3fLxT1.";

/// A Pi and four VMs: vm1 with an id and per-node settings, vm2 with the
/// defaults only (derived MAC, next free id), vm3 with its own MAC and
/// bridge, vm4 arm64 (left out). `image` is the VMs' image.path (the
/// cloud-image fixture), the Pi's is the raspi fixture.
fn profile(image: &Path) -> String {
    format!(
        "\
defaults:
  image: {{os: ubuntu-24.04, path: {img}}}
  board: vm
  network:
    subnet: 192.168.1.0/24
    gateway: 192.168.1.1
  users:
    - name: alice
      password_hash: \"{HASH}\"
      ssh_keys: [\"{KEY}\"]
  vm: {{memory: 8GiB, bridge: vmbr1, disk_size: 2GiB}}
nodes:
  - hostname: pi1
    board: rpi4
    image: {{os: ubuntu-24.04, path: {raspi}}}
    network: {{address: 192.168.1.11/24}}
  - hostname: vm1
    network: {{address: 192.168.1.21/24}}
    vm: {{cores: 4, vmid: 201}}
  - hostname: vm2
    network: {{address: 192.168.1.22/24}}
  - hostname: vm3
    network: {{address: 192.168.1.23/24, mac: \"52:54:00:12:34:56\"}}
    vm: {{memory: 1536MiB, cores: 1, bridge: br-lab.20}}
  - hostname: vm4
    arch: arm64
    network: {{address: 192.168.1.24/24}}
",
        img = image.display(),
        raspi = fixture("ubuntu-raspi.img").display()
    )
}

/// The script `render::proxmox` makes for `text`, written to `dir`, and
/// the stand-in NODE.img files beside it.
fn script_in(dir: &Path, text: &str) -> PathBuf {
    std::fs::create_dir_all(dir).expect("mkdir");
    let path = dir.join("homelab.yaml");
    std::fs::write(&path, text).expect("write profile");
    let cluster = crate::profile_support::resolve_profile(&path);
    let script = homelab_image::render::proxmox::script(&cluster).expect("vm nodes: a script");
    let out = dir.join("out");
    std::fs::create_dir_all(&out).expect("mkdir out");
    for n in ["vm1", "vm2", "vm3", "vm4"] {
        std::fs::write(out.join(format!("{n}.img")), b"stand-in").expect("write img");
    }
    let p = out.join("proxmox.sh");
    std::fs::write(&p, script).expect("write script");
    p
}

/// Stand-in `qm` and `pvesh` in `dir/bin`, logging one call per line
/// (arguments separated by US, 0x1f) to `dir/calls`.
/// - `qm list`: a header and the VMs named in $FAKE_NAMES (ids from 100);
/// - `qm status ID`: "status: stopped" for an id in $FAKE_IDS, else the
///   real one's "does not exist" and exit 2;
/// - `pvesh get /cluster/nextid`: $FAKE_NEXT; with `--vmid N`: N, or exit
///   2 for an id in $FAKE_IDS.
fn stand_ins(dir: &Path) -> PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).expect("mkdir bin");
    let log =
        r#"{ printf '%s' "$(basename "$0")"; printf '\x1f%s' "$@"; printf '\n'; } >>"$FAKE_LOG""#;
    let qm = format!(
        r#"#!/bin/bash
{log}
in_ids() {{ [[ " $FAKE_IDS " == *" $1 "* ]]; }}
case $1 in
  list)
    printf '%10s %-20s %-10s %-10s %12s %s\n' VMID NAME STATUS 'MEM(MB)' 'BOOTDISK(GB)' PID
    id=100
    for n in $FAKE_NAMES; do
      printf '%10s %-20s %-10s %-10s %12s %s\n' "$id" "$n" stopped 2048 32.00 0
      id=$((id + 1))
    done ;;
  status)
    if in_ids "$2"; then echo 'status: stopped'; else
      echo "Configuration file 'nodes/pve/qemu-server/$2.conf' does not exist" >&2; exit 2; fi ;;
  create) ;;
  *) echo "stand-in qm: unexpected $*" >&2; exit 99 ;;
esac
"#
    );
    let pvesh = format!(
        r#"#!/bin/bash
{log}
in_ids() {{ [[ " $FAKE_IDS " == *" $1 "* ]]; }}
if [[ $# == 2 && "$1 $2" == 'get /cluster/nextid' ]]; then echo "$FAKE_NEXT"; exit 0; fi
if [[ $# == 4 && "$1 $2 $3" == 'get /cluster/nextid --vmid' ]]; then
  if in_ids "$4"; then echo "VM $4 already exists" >&2; exit 2; fi
  echo "$4"; exit 0
fi
echo "stand-in pvesh: unexpected $*" >&2; exit 99
"#
    );
    for (name, text) in [("qm", qm), ("pvesh", pvesh)] {
        let p = bin.join(name);
        std::fs::write(&p, text).expect("write stand-in");
        let mode = std::os::unix::fs::PermissionsExt::from_mode(0o755);
        std::fs::set_permissions(&p, mode).expect("chmod stand-in");
    }
    bin
}

/// Runs `bash script args` from `cwd` (not the script's directory) with
/// the stand-ins first on PATH and `env` set.
fn run(
    script: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    dir: &Path,
) -> (Output, Vec<Vec<String>>) {
    let bin = stand_ins(dir);
    let log = dir.join("calls");
    let _ = std::fs::remove_file(&log);
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let cwd = dir.join("elsewhere");
    std::fs::create_dir_all(&cwd).expect("mkdir");
    let mut cmd = Command::new("bash");
    cmd.arg(script)
        .args(args)
        .current_dir(&cwd)
        .env("PATH", path)
        .env("FAKE_LOG", &log)
        .env("FAKE_NAMES", "other")
        .env("FAKE_IDS", "100")
        .env("FAKE_NEXT", "201")
        .env_remove("STORAGE")
        .env_remove("IMAGE_DIR");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run bash");
    let calls = std::fs::read_to_string(&log)
        .unwrap_or_default()
        .lines()
        .map(|l| l.split('\x1f').map(str::to_owned).collect())
        .collect();
    (out, calls)
}

/// The `qm create` argv the script must give each amd64 VM when the
/// images are in `dir/out`.
fn expected(storage: &str, dir: &Path) -> Vec<Vec<String>> {
    expected_at(storage, &dir.join("out"))
}

/// The `qm create` argv the script must give each amd64 VM, the images in
/// `images`, MACs read from the library (vm1's and vm2's are derived from
/// their hostnames).
fn expected_at(storage: &str, images: &Path) -> Vec<Vec<String>> {
    let derived = homelab_image::profile::vm::derived_mac(
        &homelab_image::profile::Hostname::parse("vm2").expect("hostname"),
    )
    .to_string();
    let dir = std::fs::canonicalize(images).expect("canonical image dir");
    let one = |id: &str, name: &str, mib: &str, cores: &str, mac: &str, bridge: &str| {
        [
            "qm",
            "create",
            id,
            "--name",
            name,
            "--memory",
            mib,
            "--cores",
            cores,
            "--cpu",
            "host",
            "--scsihw",
            "virtio-scsi-single",
            "--scsi0",
            &format!("{storage}:0,import-from={}/{name}.img", dir.display()),
            "--boot",
            "order=scsi0",
            "--serial0",
            "socket",
            "--vga",
            "serial0",
            "--net0",
            &format!("virtio={mac},bridge={bridge}"),
            "--ostype",
            "l26",
        ]
        .map(str::to_owned)
        .to_vec()
    };
    // The next free id is 201, vm1's own: vm2 and vm3 count on past it.
    let vm1_mac = homelab_image::profile::vm::derived_mac(
        &homelab_image::profile::Hostname::parse("vm1").expect("hostname"),
    )
    .to_string();
    vec![
        one("201", "vm1", "8192", "4", &vm1_mac, "vmbr1"),
        one("202", "vm2", "8192", "2", &derived, "vmbr1"),
        one("203", "vm3", "1536", "1", "52:54:00:12:34:56", "br-lab.20"),
    ]
}

fn creates(calls: &[Vec<String>]) -> Vec<Vec<String>> {
    calls
        .iter()
        .filter(|c| c.get(1).is_some_and(|a| a == "create"))
        .cloned()
        .collect()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn the_proxmox_script_passes_shellcheck_and_bash_n_and_holds_no_secret() {
    let dir = tempdir();
    let script = script_in(dir.path(), &profile(&fixture("ubuntu-cloud.img")));
    let s = script.to_str().expect("utf-8");
    let o = Command::new("bash").args(["-n", s]).output().expect("bash");
    assert!(o.status.success() && o.stderr.is_empty(), "{}", stderr(&o));
    let o = Command::new("shellcheck")
        .args(["--shell=bash", "--severity=style", s])
        .output()
        .expect("shellcheck");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stdout));
    let text = std::fs::read_to_string(&script).expect("read script");
    assert!(text.starts_with("#!/usr/bin/env bash\n"), "{text}");
    assert!(text.contains("\nset -euo pipefail\n"), "{text}");
    assert!(
        !text.contains("AAAAC3Nza") && !text.contains("$6$"),
        "{text}"
    );
    assert!(
        text.contains("# vm4 is arm64: left out, Proxmox VE runs amd64 guests only"),
        "{text}"
    );
    assert!(!text.contains("'vm4'") && !text.contains("'pi1'"), "{text}");
}

#[test]
fn a_real_run_gives_each_amd64_vm_its_exact_qm_create() {
    let dir = tempdir();
    let script = script_in(dir.path(), &profile(&fixture("ubuntu-cloud.img")));
    let (o, calls) = run(&script, &[], &[], dir.path());
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(creates(&calls), expected("local-lvm", dir.path()));
    // Every check came before the first create.
    let first_create = calls
        .iter()
        .position(|c| c[1] == "create")
        .expect("a create");
    assert!(calls[..first_create].iter().any(|c| c[1] == "list"));
    assert!(
        calls[..first_create]
            .iter()
            .any(|c| c[1] == "status" && c[2] == "201")
    );
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("created VM 202 (vm2): qm start 202"),
        "{stdout}"
    );
}

#[test]
fn storage_and_image_dir_come_from_the_environment() {
    let dir = tempdir();
    let script = script_in(dir.path(), &profile(&fixture("ubuntu-cloud.img")));
    let moved = dir.path().join("images");
    std::fs::rename(dir.path().join("out"), &moved).expect("move images");
    let script = moved.join(script.file_name().expect("name"));
    // IMAGE_DIR relative to the working directory, as a user would type it.
    let (o, calls) = run(
        &script,
        &["vm3"],
        &[("STORAGE", "tank"), ("IMAGE_DIR", "../images")],
        dir.path(),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    // vm3 alone: the next free id is 201, kept for vm1 even when vm1 is
    // not created in this run.
    let mut want: Vec<Vec<String>> = expected_at("tank", &moved)
        .into_iter()
        .filter(|c| c[4] == "vm3")
        .collect();
    want[0][2] = "202".to_owned();
    assert_eq!(creates(&calls), want);
}

fn canonical(p: &Path) -> String {
    std::fs::canonicalize(p)
        .expect("canonical")
        .display()
        .to_string()
}

#[test]
fn a_dry_run_prints_the_same_commands_and_creates_nothing() {
    let dir = tempdir();
    let script = script_in(dir.path(), &profile(&fixture("ubuntu-cloud.img")));
    let (o, calls) = run(&script, &["--dry-run"], &[], dir.path());
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(creates(&calls).is_empty(), "{calls:?}");
    let printed: Vec<String> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    let want: Vec<String> = expected("local-lvm", dir.path())
        .iter()
        .map(|c| c.join(" "))
        .collect();
    assert_eq!(printed, want);
}

#[test]
fn an_existing_vmid_name_or_a_missing_image_creates_nothing() {
    let dir = tempdir();
    let script = script_in(dir.path(), &profile(&fixture("ubuntu-cloud.img")));
    // vm1's id exists on this host.
    let (o, calls) = run(&script, &[], &[("FAKE_IDS", "100 201")], dir.path());
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("VM 201 (vm.vmid of vm1) exists already (qm status 201)"),
        "{}",
        stderr(&o)
    );
    assert!(stderr(&o).contains("nothing created"), "{}", stderr(&o));
    assert!(creates(&calls).is_empty(), "{calls:?}");
    // A VM named vm2 exists.
    let (o, calls) = run(&script, &[], &[("FAKE_NAMES", "other vm2")], dir.path());
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("a VM named vm2 exists already (qm list)"),
        "{}",
        stderr(&o)
    );
    assert!(creates(&calls).is_empty(), "{calls:?}");
    // vm3's image is missing.
    let img = dir.path().join("out/vm3.img");
    std::fs::remove_file(&img).expect("remove vm3.img");
    let (o, calls) = run(&script, &["--dry-run"], &[], dir.path());
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains(&format!(
            "{}/vm3.img is missing: build node vm3",
            canonical(&dir.path().join("out"))
        )),
        "{}",
        stderr(&o)
    );
    assert!(o.stdout.is_empty() && creates(&calls).is_empty());
}

#[test]
fn unknown_nodes_options_and_storages_are_refused_by_name() {
    let dir = tempdir();
    let script = script_in(dir.path(), &profile(&fixture("ubuntu-cloud.img")));
    for (args, env, needle) in [
        (
            &["vm4"][..],
            &[][..],
            "vm4 is not an amd64 vm node of this profile (those are: vm1 vm2 vm3)",
        ),
        (&["--force"][..], &[][..], "unknown option --force"),
        (
            &[][..],
            &[("STORAGE", "local-lvm:0,x=y")][..],
            "STORAGE=local-lvm:0,x=y is not a Proxmox storage id",
        ),
    ] {
        let (o, calls) = run(&script, args, env, dir.path());
        assert_eq!(o.status.code(), Some(1), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(needle), "{args:?}: {}", stderr(&o));
        assert!(creates(&calls).is_empty());
    }
}

/// `build` writes out/proxmox.sh (the renderer's text) for a profile with
/// vm nodes, and removes an older one when the profile has none.
#[test]
fn build_writes_proxmox_sh_only_for_a_profile_with_vm_nodes() {
    let dir = tempdir();
    let img = fixture("ubuntu-cloud.img");
    let with_vms = dir.path().join("vms.yaml");
    std::fs::write(&with_vms, profile(&img)).expect("write");
    let out = dir.path().join("out");
    let o = out.to_str().expect("utf-8");
    let stdout = build_ok(&with_vms, &["--node", "vm2", "--out", o]);
    assert!(stdout.contains("proxmox.sh"), "{stdout}");
    let written = std::fs::read_to_string(out.join("proxmox.sh")).expect("proxmox.sh");
    let again = script_in(&dir.path().join("render"), &profile(&img));
    assert_eq!(written, std::fs::read_to_string(again).expect("read"));
    // A profile of boards only: no proxmox.sh, and the old one is gone.
    let pis = dir.path().join("pis.yaml");
    let text = profile(&img);
    let text = text[..text.find("  - hostname: vm1").expect("vm1")]
        .replace("  board: vm\n", "  board: rpi4\n")
        .replace("  vm: {memory: 8GiB, bridge: vmbr1, disk_size: 2GiB}\n", "");
    std::fs::write(&pis, text).expect("write");
    let stdout = build_ok(&pis, &["--node", "pi1", "--out", o]);
    assert!(!stdout.contains("proxmox.sh"), "{stdout}");
    assert!(!out.join("proxmox.sh").exists());
}
