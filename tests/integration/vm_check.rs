//! `check` on profiles with `board: vm` nodes (issue 18): each refusal is
//! made at the file:line:column of the offending value with a message that
//! makes sense for a VM, and a mixed Pi + VM profile passes, its derived
//! MACs stable and matched by the rendered network-config.

use std::path::{Path, PathBuf};

use crate::k3s_check::refused_at;
use crate::profile_support::{bin, tempdir};

/// A url image: `check` does not fetch it, so no fixture is needed (the
/// catalog's cloud images are another helper's).
const IMAGE: &str = "{os: ubuntu-24.04, url: \"https://images.example.net/noble/cloud.img\", sha256: abababababababababababababababababababababababababababababababab}";

/// One VM node; tests append fields to it (its last line is the node's).
fn one_vm() -> String {
    format!(
        "\
defaults:
  image: {IMAGE}
  board: vm
  users:
    - name: alice
      ssh_keys:
        - ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMxSAMby/XGYsjcC5K1MDkK2b2DTWIdw+3mOB8HYPwp7 alice@laptop
nodes:
  - hostname: vm1
    network: {{address: 192.168.1.21/24}}
"
    )
}

/// `one_vm` with `line` added to the node.
fn vm_with(line: &str) -> String {
    format!("{}    {line}\n", one_vm())
}

#[test]
fn a_vm_section_on_a_board_is_refused() {
    let text = one_vm().replace("  board: vm\n", "  board: rpi4\n") + "    vm: {cores: 4}\n";
    refused_at(
        &text,
        "{cores: 4}",
        0,
        &["node vm1: vm: ", "`vm` is for `board: vm` nodes", "a rpi4"],
    );
}

#[test]
fn amd64_on_a_board_is_refused() {
    let text = one_vm().replace("  board: vm\n", "  board: rpi4\n") + "    arch: amd64\n";
    refused_at(
        &text,
        "amd64",
        0,
        &[
            "node vm1: arch: ",
            "rpi4 is an arm64 board",
            "only a vm node",
        ],
    );
}

#[test]
fn armbian_on_a_vm_is_refused() {
    let text = one_vm().replace("{os: ubuntu-24.04,", "{os: armbian,");
    refused_at(
        &text,
        "vm\n",
        0,
        &[
            "node vm1: defaults.board: ",
            "armbian publishes no cloud image",
            "Ubuntu cloud image",
        ],
    );
}

#[test]
fn wifi_on_a_vm_is_refused() {
    let text = vm_with("wifi: {ssid: home, password: {value: \"12345678\"}}");
    refused_at(
        &text,
        "{ssid",
        0,
        &["node vm1: wifi: ", "a vm node has no Wi-Fi", "vm.bridge"],
    );
}

#[test]
fn zero_cores_are_refused() {
    let text = vm_with("vm: {cores: 0}");
    refused_at(
        &text,
        "0}",
        0,
        &["node vm1: vm.cores: ", "0 cores: a VM has 1 to 512"],
    );
}

#[test]
fn a_thousand_cores_are_refused() {
    let text = vm_with("vm: {cores: 1000}");
    refused_at(
        &text,
        "1000}",
        0,
        &["node vm1: vm.cores: ", "1000 cores: a VM has 1 to 512"],
    );
}

/// serde's own message for a negative or non-numeric count names a Rust
/// type ("invalid u16"): ours says what a count of cores is.
#[test]
fn negative_or_wordy_cores_are_refused_without_a_type_name() {
    for (value, shown) in [
        ("-1", "\"-1\""),
        ("two", "\"two\""),
        ("70000", "70000 cores"),
    ] {
        let text = vm_with(&format!("vm: {{cores: {value}}}"));
        refused_at(
            &text,
            &format!("{value}}}"),
            0,
            &["node vm1: vm.cores: ", shown, "a VM has 1 to 512"],
        );
        let out = check(&text);
        assert!(!out.contains("u16"), "{out}");
    }
}

#[test]
fn a_vmid_below_100_is_refused() {
    let text = vm_with("vm: {vmid: 42}");
    refused_at(
        &text,
        "42}",
        0,
        &[
            "node vm1: vm.vmid: ",
            "42 is not a Proxmox VM id",
            "100 to 999999999",
        ],
    );
}

#[test]
fn a_negative_vmid_is_refused_without_a_type_name() {
    let text = vm_with("vm: {vmid: -5}");
    refused_at(
        &text,
        "-5}",
        0,
        &["node vm1: vm.vmid: ", "\"-5\" is not a Proxmox VM id"],
    );
    assert!(!check(&text).contains("u32"));
}

#[test]
fn two_nodes_with_the_same_vmid_are_refused() {
    let text = vm_with("vm: {vmid: 150}")
        + "  - hostname: vm2\n    network: {address: 192.168.1.22/24}\n    vm: {vmid: 150}\n";
    refused_at(
        &text,
        "150}",
        1,
        &["node vm2: vm.vmid: ", "VM id 150 is also node vm1's"],
    );
}

#[test]
fn a_vmid_in_defaults_is_refused() {
    let text = one_vm().replace("  board: vm\n", "  board: vm\n  vm: {vmid: 200}\n");
    refused_at(
        &text,
        "200}",
        0,
        &["defaults.vm.vmid: ", "identifies one machine"],
    );
}

#[test]
fn memory_without_a_unit_is_refused() {
    for value in ["\"4096\"", "4096"] {
        let text = vm_with(&format!("vm: {{memory: {value}}}"));
        refused_at(
            &text,
            &format!("{value}}}"),
            0,
            &[
                "node vm1: vm.memory: ",
                "\"4096\" is not a memory size",
                "MiB or GiB",
                "like 4GiB",
            ],
        );
    }
}

#[test]
fn memory_below_512mib_is_refused() {
    let text = vm_with("vm: {memory: 256MiB}");
    refused_at(
        &text,
        "256MiB",
        0,
        &[
            "node vm1: vm.memory: ",
            "\"256MiB\" is not a memory size",
            "from 512MiB",
        ],
    );
}

#[test]
fn a_disk_below_1gib_is_refused() {
    let text = vm_with("vm: {disk_size: 100MiB}");
    refused_at(
        &text,
        "100MiB",
        0,
        &[
            "node vm1: vm.disk_size: ",
            "\"100MiB\" is not a disk size",
            "from 1GiB",
        ],
    );
}

#[test]
fn a_bridge_that_is_no_interface_name_is_refused() {
    let text = vm_with("vm: {bridge: \"vm br0\"}");
    refused_at(
        &text,
        "\"vm br0\"",
        0,
        &[
            "node vm1: vm.bridge: ",
            "\"vm br0\" is not a network interface name",
        ],
    );
}

/// A `,` would add options to proxmox.sh's `--net0 virtio=MAC,bridge=…`:
/// refused like every name Proxmox would refuse.
#[test]
fn a_bridge_name_proxmox_refuses_is_refused() {
    for name in ["br0,tag=5", "br'0", "br@0"] {
        let text = vm_with(&format!("vm: {{bridge: \"{name}\"}}"));
        refused_at(
            &text,
            &format!("\"{name}\""),
            0,
            &[
                "node vm1: vm.bridge: ",
                "is not a bridge name Proxmox accepts",
                "like vmbr0",
            ],
        );
    }
}

#[test]
fn a_multicast_mac_on_a_vm_is_refused() {
    let text = one_vm().replace(
        "{address: 192.168.1.21/24}",
        "{address: 192.168.1.21/24, mac: \"01:00:5e:00:00:01\"}",
    );
    refused_at(
        &text,
        "\"01:00",
        0,
        &[
            "node vm1: network.mac: ",
            "01:00:5e:00:00:01 is a multicast address",
            "unicast",
        ],
    );
}

#[test]
fn netboot_on_a_vm_is_refused() {
    let text = vm_with("netboot: {serial: 1234abcd}");
    refused_at(
        &text,
        "{serial",
        0,
        &[
            "node vm1: netboot: ",
            "only rpi4 and rpi5 boot from the network, not vm",
        ],
    );
}

#[test]
fn firmware_on_a_vm_is_refused() {
    let text = vm_with("firmware: {boot_order: boot-usb-sd}");
    refused_at(
        &text,
        "boot-usb-sd",
        0,
        &[
            "node vm1: firmware.boot_order: ",
            "vm has no Raspberry Pi EEPROM bootloader",
            "rpi4 and rpi5 nodes only",
        ],
    );
}

/// `check`'s stderr for a profile that must fail.
fn check(text: &str) -> String {
    let dir = tempdir();
    let path = dir.path().join("homelab.yaml");
    std::fs::write(&path, text).expect("write profile");
    let out = bin()
        .arg("--profile")
        .arg(&path)
        .arg("check")
        .output()
        .expect("run check");
    assert_eq!(out.status.code(), Some(1));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Two Pis and two VMs (one amd64, one arm64), VM settings both in
/// defaults and per node.
pub(crate) fn mixed_profile() -> String {
    format!(
        "\
defaults:
  image: {{os: ubuntu-24.04}}
  board: rpi4
  network:
    subnet: 192.168.1.0/24
    gateway: 192.168.1.1
    dns: [192.168.1.1]
  users:
    - name: alice
      sudo: nopasswd
      ssh_keys:
        - ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMxSAMby/XGYsjcC5K1MDkK2b2DTWIdw+3mOB8HYPwp7 alice@laptop
  vm: {{memory: 8GiB, bridge: vmbr1}}
nodes:
  - hostname: pi1
    network: {{address: 192.168.1.11/24, mac: \"dc:a6:32:01:36:c1\"}}
  - hostname: pi2
    network: {{address: 192.168.1.12/24, mac: \"dc:a6:32:01:36:c2\"}}
  - hostname: vm1
    board: vm
    image: {IMAGE}
    network: {{address: 192.168.1.21/24}}
    vm: {{cores: 4, vmid: 201, disk_size: 32GiB}}
  - hostname: vm2
    board: vm
    arch: arm64
    image: {}
    network: {{address: 192.168.1.22/24, mac: \"52:54:00:12:34:56\"}}
    vm: {{memory: 2048MiB, bridge: br-lab}}
",
        IMAGE.replace("cloud.img", "cloud-arm.img")
    )
}

fn write(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join("homelab.yaml");
    std::fs::write(&p, text).expect("write profile");
    p
}

/// The `match: macaddress` of the rendered network-config of `node`
/// (wherever the seed lives in the tree), read by PyYAML.
fn rendered_mac(profile: &Path, node: &str, tree: &Path) -> String {
    let out = bin()
        .arg("--profile")
        .arg(profile)
        .args(["render", "--node", node, "--out"])
        .arg(tree)
        .output()
        .expect("run render");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let found: Vec<PathBuf> = walk(tree)
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n == "network-config"))
        .collect();
    assert_eq!(found.len(), 1, "{found:?}");
    let code = "import sys,yaml; n=yaml.safe_load(open(sys.argv[1]))['network']; \
                e=n['ethernets']; assert len(e)==1, e; \
                print(list(e.values())[0]['match']['macaddress'])";
    let o = std::process::Command::new("/usr/bin/python3")
        .args(["-c", code])
        .arg(&found[0])
        .output()
        .expect("run python3");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).trim().to_owned()
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir).expect("read dir") {
        let p = e.expect("dir entry").path();
        if p.is_dir() {
            v.extend(walk(&p));
        } else {
            v.push(p);
        }
    }
    v
}

#[test]
fn a_mixed_pi_and_vm_profile_passes_with_stable_macs_in_network_config() {
    let dir = tempdir();
    let path = write(dir.path(), &mixed_profile());
    let run_check = || {
        let out = bin()
            .arg("--profile")
            .arg(&path)
            .arg("check")
            .output()
            .expect("run check");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains("ok (4 nodes, 0 warnings)"), "{stdout}");
        stdout
    };
    assert_eq!(run_check(), run_check());
    // vm1 has no network.mac: its MAC is derived from its hostname, the
    // same on every run, locally administered and unicast.
    let derived = homelab_image::profile::vm::derived_mac(
        &homelab_image::profile::Hostname::parse("vm1").expect("hostname"),
    )
    .to_string();
    assert!(derived.starts_with("02:"), "{derived}");
    let first = rendered_mac(&path, "vm1", &dir.path().join("t1"));
    let second = rendered_mac(&path, "vm1", &dir.path().join("t2"));
    assert_eq!(first, derived);
    assert_eq!(second, derived);
    // vm2's own MAC is kept.
    assert_eq!(
        rendered_mac(&path, "vm2", &dir.path().join("t3")),
        "52:54:00:12:34:56"
    );
    // The resolved settings: defaults under the node's own.
    let cluster = crate::profile_support::resolve_profile(&path);
    let vm = |n: &str| {
        let node = cluster.node(n).expect("node");
        (
            node.arch.to_string(),
            node.vm.clone().expect("a vm node has vm settings"),
        )
    };
    let (arch1, vm1) = vm("vm1");
    let (arch2, vm2) = vm("vm2");
    assert_eq!(
        (
            arch1.as_str(),
            vm1.memory.mib(),
            vm1.cores,
            vm1.bridge.as_str(),
            vm1.vmid,
            vm1.disk_size.to_string()
        ),
        ("amd64", 8192, 4, "vmbr1", Some(201), "32GiB".to_owned())
    );
    assert_eq!(
        (
            arch2.as_str(),
            vm2.memory.mib(),
            vm2.cores,
            vm2.bridge.as_str(),
            vm2.vmid,
            vm2.disk_size.to_string()
        ),
        ("arm64", 2048, 2, "br-lab", None, "20GiB".to_owned())
    );
    assert!(cluster.node("pi1").expect("pi1").vm.is_none());
}
