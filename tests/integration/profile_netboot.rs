//! `netboot:` in the profile (issue 14 §1): `check` refuses malformed and
//! duplicate Pi serials and netboot on boards that cannot, and the kernel
//! command line rendered (and built) for a netbooted node mounts its root
//! over NBD with a static `ip=`. Command lines are judged by splitting them
//! into tokens and the `ip=` fields; netmasks by Python's `ipaddress`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use homelab_image::render::cmdline::edit_cmdline;
use homelab_image::render::{FileKind, FileSpec};

use crate::profile_support::{bin, render_profile, tempdir};
use crate::util::{extract_partition, fixture, hi_ok, our_partition, run_ok};

/// Ubuntu 24.04 raspi's stock `cmdline.txt`.
const NOBLE: &str = "console=serial0,115200 multipath=off dwc_otg.lpm_enable=0 console=tty1 \
                     root=LABEL=writable rootfstype=ext4 rootwait fixrtc\n";

const HEAD: &str = "\
defaults:
  image: {os: ubuntu-24.04}
  board: rpi4
  users:
    - name: alice
      ssh_keys:
        - ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMxSAMby/XGYsjcC5K1MDkK2b2DTWIdw+3mOB8HYPwp7 alice@laptop
nodes:
";

/// A profile of `HEAD` plus `nodes` (already indented as list items).
fn write_profile(dir: &Path, nodes: &str) -> PathBuf {
    let p = dir.join("homelab.yaml");
    std::fs::write(&p, format!("{HEAD}{nodes}")).expect("write profile");
    p
}

/// `check` on `path`: its exit code and stderr.
fn check(path: &Path) -> (Option<i32>, String) {
    let out = bin()
        .arg("--profile")
        .arg(path)
        .arg("check")
        .output()
        .expect("run check");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn assert_refused(path: &Path, fragments: &[&str]) {
    let (code, stderr) = check(path);
    assert_eq!(code, Some(1), "{stderr}");
    for f in fragments {
        assert!(stderr.contains(f), "{f:?} not in:\n{stderr}");
    }
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// The line of `HEAD` + nodes on which the first node's serial is.
fn serial_line() -> usize {
    HEAD.lines().count() + 5
}

#[test]
fn a_malformed_serial_is_refused_at_its_line_and_column() {
    let dir = tempdir();
    for bad in [
        "abcd123",
        "abcd12345",
        "abcd123g",
        "20000000abcd1234",
        "10000000abcd12",
        "",
    ] {
        let p = write_profile(
            dir.path(),
            &format!(
                "  - hostname: pi1
    network:
      address: 192.168.1.11/24
    netboot:
      serial: '{bad}'
"
            ),
        );
        // Column 15: six spaces and `serial: ` before the value.
        let at = format!("homelab.yaml:{}:15:", serial_line());
        assert_refused(&p, &[&at, &format!("{bad:?} is not a Raspberry Pi serial")]);
    }
}

#[test]
fn well_formed_serials_in_either_form_and_case_pass_check() {
    let dir = tempdir();
    let p = write_profile(
        dir.path(),
        "  - hostname: pi1
    network: {address: 192.168.1.11/24}
    netboot: {serial: ABCD1234}
  - hostname: pi2
    network: {address: 192.168.1.12/24}
    netboot: {serial: '10000000dcba4321', server: 192.168.1.5}
  - hostname: pi3
    network: {address: 192.168.1.13/24}
    netboot: {serial: 12345678}
",
    );
    let (code, stderr) = check(&p);
    assert_eq!(code, Some(0), "{stderr}");
}

#[test]
fn a_serial_used_by_two_nodes_is_refused_naming_both() {
    let dir = tempdir();
    // The same board: the long form's 10000000 is dropped, case ignored.
    let p = write_profile(
        dir.path(),
        "  - hostname: pi1
    network: {address: 192.168.1.11/24}
    netboot: {serial: abcd1234}
  - hostname: pi2
    network: {address: 192.168.1.12/24}
    netboot: {serial: '10000000ABCD1234'}
",
    );
    assert_refused(&p, &["node pi2: netboot.serial:", "abcd1234", "node pi1's"]);
}

#[test]
fn netboot_in_defaults_is_refused() {
    let dir = tempdir();
    let p = dir.path().join("homelab.yaml");
    let text = format!(
        "{}  - hostname: pi1\n    network: {{address: 192.168.1.11/24}}\n",
        HEAD.replace(
            "  board: rpi4\n",
            "  board: rpi4\n  netboot: {serial: abcd1234}\n"
        )
    );
    std::fs::write(&p, text).expect("write");
    assert_refused(&p, &["defaults.netboot:", "belongs in a node"]);
}

#[test]
fn a_netboot_node_that_is_not_a_raspberry_pi_is_refused() {
    let dir = tempdir();
    let p = write_profile(
        dir.path(),
        "  - hostname: rock1
    image: {os: armbian, url: 'https://example.org/a.img.xz', sha256: '0000000000000000000000000000000000000000000000000000000000000000'}
    board: rock-5b
    network: {address: 192.168.1.11/24}
    netboot: {serial: abcd1234}
",
    );
    assert_refused(
        &p,
        &["node rock1: netboot:", "only rpi4 and rpi5", "not rock-5b"],
    );
}

/// The `cmdline.txt` edit rendered for `node`, applied to `NOBLE`.
fn rendered_cmdline(specs: &[FileSpec]) -> String {
    let ops = specs
        .iter()
        .find_map(|s| match &s.kind {
            FileKind::CmdlineEdit { ops } if s.path == "cmdline.txt" => Some(ops),
            _ => None,
        })
        .expect("a cmdline.txt edit");
    edit_cmdline(NOBLE, ops)
}

/// The first line's tokens, and every value of each key.
fn parse(line: &str) -> (Vec<String>, BTreeMap<String, Vec<String>>) {
    let first = line.lines().next().unwrap_or("");
    let tokens: Vec<String> = first.split_ascii_whitespace().map(str::to_owned).collect();
    let mut keys: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for t in &tokens {
        let (k, v) = t.split_once('=').unwrap_or((t, ""));
        keys.entry(k.to_owned()).or_default().push(v.to_owned());
    }
    (tokens, keys)
}

/// The one value of `key`, asserting it occurs exactly once.
fn only<'a>(keys: &'a BTreeMap<String, Vec<String>>, key: &str) -> &'a str {
    let v = keys.get(key).map_or(&[][..], Vec::as_slice);
    assert_eq!(v.len(), 1, "{key}= occurs {} times", v.len());
    &v[0]
}

/// The prefix length Python's `ipaddress` gives a dotted netmask.
fn prefix_of_netmask(mask: &str) -> u8 {
    let out = run_ok(Command::new("python3").arg("-c").arg(format!(
        "import ipaddress; print(ipaddress.IPv4Network('0.0.0.0/{mask}').prefixlen)"
    )));
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("a prefix length")
}

fn render_nodes(nodes: &str) -> Vec<(String, Vec<FileSpec>)> {
    let dir = tempdir();
    let p = write_profile(dir.path(), nodes);
    render_profile(&p).nodes.clone()
}

#[test]
fn a_netboot_nodes_rendered_cmdline_mounts_its_root_over_nbd() {
    let nodes = render_nodes(
        "  - hostname: pi1
    network: {address: 192.168.1.11/24, gateway: 192.168.1.1, interface: eth0}
    netboot: {serial: abcd1234, server: 192.168.1.5}
  - hostname: pi2
    network: {address: 192.168.1.12/24, gateway: 192.168.1.1}
",
    );
    let line = rendered_cmdline(&nodes[0].1);
    let (tokens, keys) = parse(&line);
    assert_eq!(only(&keys, "root"), "/dev/nbd0p2", "{line}");
    assert_eq!(only(&keys, "nbdroot"), "192.168.1.5/pi1", "{line}");
    assert_eq!(
        only(&keys, "ip"),
        "192.168.1.11::192.168.1.1:255.255.255.0:pi1:eth0:off",
        "{line}"
    );
    assert_eq!(only(&keys, "ds"), "nocloud", "{line}");
    // Every other stock token is still there, in order.
    let stock: Vec<&str> = NOBLE
        .split_ascii_whitespace()
        .filter(|t| !t.starts_with("root="))
        .collect();
    let kept: Vec<&str> = tokens
        .iter()
        .map(String::as_str)
        .filter(|t| stock.contains(t))
        .collect();
    assert_eq!(kept, stock, "{line}");
    // Applying the same edit again changes nothing.
    let ops = nodes[0]
        .1
        .iter()
        .find_map(|s| match &s.kind {
            FileKind::CmdlineEdit { ops } => Some(ops.clone()),
            _ => None,
        })
        .expect("edit");
    assert_eq!(edit_cmdline(&line, &ops), line);
    // A node without netboot keeps its SD card root and gets no ip=.
    let sd = rendered_cmdline(&nodes[1].1);
    let (_, sd_keys) = parse(&sd);
    assert_eq!(only(&sd_keys, "root"), "LABEL=writable", "{sd}");
    assert!(
        !sd_keys.contains_key("ip") && !sd_keys.contains_key("nbdroot"),
        "{sd}"
    );
}

#[test]
fn without_a_server_the_cmdline_leaves_nbdroot_to_serve() {
    let nodes = render_nodes(
        "  - hostname: pi1
    network: {address: 192.168.1.11/24}
    netboot: {serial: abcd1234}
",
    );
    let line = rendered_cmdline(&nodes[0].1);
    let (_, keys) = parse(&line);
    assert_eq!(only(&keys, "root"), "/dev/nbd0p2", "{line}");
    assert!(!keys.contains_key("nbdroot"), "{line}");
    // No gateway in the profile: the field stays empty.
    assert_eq!(
        only(&keys, "ip"),
        "192.168.1.11:::255.255.255.0:pi1:eth0:off"
    );
}

/// The `ip=` fields: client, server, gateway, netmask, host, device, autoconf.
fn ip_fields(nodes: &[(String, Vec<FileSpec>)], i: usize) -> Vec<String> {
    let line = rendered_cmdline(&nodes[i].1);
    let (_, keys) = parse(&line);
    only(&keys, "ip").split(':').map(str::to_owned).collect()
}

#[test]
fn ip_param_carries_the_netmask_of_a_24_and_a_16() {
    let nodes = render_nodes(
        "  - hostname: pi1
    network: {address: 192.168.7.11/24, gateway: 192.168.7.1}
    netboot: {serial: abcd1234}
  - hostname: pi2
    network: {address: 10.20.30.40/16, gateway: 10.20.0.1, interface: end0}
    netboot: {serial: abcd1235}
",
    );
    for (i, (addr, gw, prefix, host, dev)) in [
        ("192.168.7.11", "192.168.7.1", 24, "pi1", "eth0"),
        ("10.20.30.40", "10.20.0.1", 16, "pi2", "end0"),
    ]
    .into_iter()
    .enumerate()
    {
        let f = ip_fields(&nodes, i);
        assert_eq!(f.len(), 7, "{f:?}");
        assert_eq!(
            (f[0].as_str(), f[1].as_str(), f[2].as_str()),
            (addr, "", gw),
            "{f:?}"
        );
        assert_eq!(prefix_of_netmask(&f[3]), prefix, "{f:?}");
        assert_eq!(
            (f[4].as_str(), f[5].as_str(), f[6].as_str()),
            (host, dev, "off")
        );
    }
}

#[test]
fn build_writes_the_network_root_into_the_images_cmdline_txt() {
    let tmp = tempdir();
    let p = crate::util::example_profile(
        tmp.path(),
        "pi4-microcloud.yaml",
        None,
        &fixture("ubuntu-raspi.img"),
    );
    let text = std::fs::read_to_string(&p).expect("read");
    let text = text.replacen(
        "  - hostname: pi1\n",
        "  - hostname: pi1\n    netboot: {serial: 'DC0FFEE1', server: 192.168.1.5}\n",
        1,
    );
    std::fs::write(&p, text).expect("write");
    let out = tmp.path().join("out");
    let built = bin()
        .arg("--profile")
        .arg(&p)
        .arg("build")
        .args(["--node", "pi1", "--out"])
        .arg(&out)
        .output()
        .expect("run build");
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let img = out.join("pi1.img");
    let i = img.to_str().expect("utf-8 path");
    let line = hi_ok(&["cat", i, "system-boot", "/cmdline.txt"]);
    let (_, keys) = parse(&line);
    assert_eq!(only(&keys, "root"), "/dev/nbd0p2", "{line}");
    assert_eq!(only(&keys, "nbdroot"), "192.168.1.5/pi1", "{line}");
    assert_eq!(
        only(&keys, "ip"),
        "192.168.1.11::192.168.1.1:255.255.255.0:pi1:eth0:off",
        "{line}"
    );
    assert_eq!(only(&keys, "ds"), "nocloud", "{line}");
    let (start, len) = our_partition(&img, 1);
    let part = tmp.path().join("boot.fat");
    extract_partition(&img, start, len, &part);
    run_ok(Command::new("fsck.fat").arg("-n").arg(&part));
}

#[test]
fn a_netboot_node_on_ubuntu_22_04_is_warned_about_nbd_client() {
    let dir = tempdir();
    let p = dir.path().join("homelab.yaml");
    let text = format!(
        "{}  - hostname: pi1\n    network: {{address: 192.168.1.11/24}}\n    netboot: {{serial: abcd1234}}\n  - hostname: pi2\n    network: {{address: 192.168.1.12/24}}\n",
        HEAD.replace("ubuntu-24.04", "ubuntu-22.04")
    );
    std::fs::write(&p, text).expect("write");
    let (code, stderr) = check(&p);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("node pi1: netboot:") && stderr.contains("no nbd-client"),
        "{stderr}"
    );
    // Only the netbooted node is warned.
    assert!(!stderr.contains("node pi2: netboot"), "{stderr}");
}

#[test]
fn on_ubuntu_26_04_the_network_root_goes_into_current_cmdline_txt() {
    let dir = tempdir();
    let p = dir.path().join("homelab.yaml");
    let text = format!(
        "{}  - hostname: pi1\n    network: {{address: 10.0.0.11/8}}\n    netboot: {{serial: abcd1234, server: 10.0.0.2}}\n",
        HEAD.replace("ubuntu-24.04", "ubuntu-26.04")
    );
    std::fs::write(&p, text).expect("write");
    let nodes = render_profile(&p).nodes.clone();
    let edits: Vec<&FileSpec> = nodes[0]
        .1
        .iter()
        .filter(|s| matches!(s.kind, FileKind::CmdlineEdit { .. }))
        .collect();
    assert_eq!(edits.len(), 1);
    assert_eq!(edits[0].path, "current/cmdline.txt");
    let FileKind::CmdlineEdit { ops } = &edits[0].kind else {
        unreachable!("filtered above")
    };
    let line = edit_cmdline(NOBLE, ops);
    let (_, keys) = parse(&line);
    assert_eq!(only(&keys, "root"), "/dev/nbd0p2", "{line}");
    assert_eq!(only(&keys, "nbdroot"), "10.0.0.2/pi1", "{line}");
    let ip: Vec<&str> = only(&keys, "ip").split(':').collect();
    assert_eq!(prefix_of_netmask(ip[3]), 8, "{line}");
}

#[test]
fn a_netboot_node_needs_a_serial_or_a_mac() {
    let dir = tempdir();
    let node = |extra: &str| {
        format!(
            "  - hostname: pi1\n    network: {{address: 192.168.1.11/24, interface: eth0{extra}}}\n    netboot: {{server: 192.168.1.5}}\n"
        )
    };
    let p = write_profile(dir.path(), &node(""));
    assert_refused(&p, &["pi1", "netboot", "`serial`", "network.mac"]);
    let p = write_profile(dir.path(), &node(", mac: dc:a6:32:01:02:03"));
    let (code, stderr) = check(&p);
    assert_eq!(code, Some(0), "{stderr}");
}

#[test]
fn a_bad_disk_size_is_refused_at_its_line_and_column() {
    let dir = tempdir();
    for bad in ["512MiB", "17TiB", "1.5G", "16 gb"] {
        let p = write_profile(
            dir.path(),
            &format!(
                "  - hostname: pi1
    network:
      address: 192.168.1.11/24
    netboot:
      serial: abcd1234
      disk_size: '{bad}'
"
            ),
        );
        // Column 18: six spaces and `disk_size: ` before the value.
        let at = format!("homelab.yaml:{}:18:", serial_line() + 1);
        assert_refused(&p, &[&at, &format!("{bad:?} is not a disk size")]);
    }
}
