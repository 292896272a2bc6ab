//! One test per semantic rule of `resolve` (MicroCloud's preseed rules
//! first), each starting from a valid profile and breaking one thing.

use std::path::Path;

use homelab_image::profile::load::parse;
use homelab_image::profile::resolve::{Context, resolve};

const BASE: &str = "
defaults:
  image: {os: ubuntu-24.04}
  board: rpi4
  network:
    subnet: 192.168.1.0/24
    gateway: 192.168.1.1
    uplink: {nic: eth1}
  users:
    - {name: alice, ssh_keys: ['ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMxSAMby/XGYsjcC5K1MDkK2b2DTWIdw+3mOB8HYPwp7 alice@laptop']}
nodes:
  - hostname: pi1
    network: {address: 192.168.1.11/24, mac: 'dc:a6:32:00:00:01'}
    storage: {ceph: [/dev/disk/by-id/usb-ssd-1]}
  - hostname: pi2
    network: {address: 192.168.1.12/24, mac: 'dc:a6:32:00:00:02'}
    storage: {ceph: [/dev/disk/by-id/usb-ssd-2]}
  - hostname: pi3
    network: {address: 192.168.1.13/24, mac: 'dc:a6:32:00:00:03'}
    storage: {ceph: [/dev/disk/by-id/usb-ssd-3]}
microcloud:
  initiator: pi1
  lookup_subnet: 192.168.1.0/24
  session_passphrase: {value: secret}
  ovn: {ipv4_gateway: 192.168.1.1/24, ipv4_range: 192.168.1.200-192.168.1.250}
";

/// (errors, warnings) as displayed, for `yaml`.
fn problems(yaml: &str) -> (Vec<String>, Vec<String>) {
    let path = Path::new("/nonexistent/h.yaml");
    let profile = parse(path, yaml).unwrap_or_else(|e| panic!("{e}"));
    let ctx = Context {
        profile_path: path.to_owned(),
        home: None,
        env: Box::new(|_| None),
    };
    match resolve(&profile, &ctx) {
        Ok(r) => (vec![], r.warnings.iter().map(ToString::to_string).collect()),
        Err(report) => (
            report.errors.iter().map(ToString::to_string).collect(),
            report.warnings.iter().map(ToString::to_string).collect(),
        ),
    }
}

fn edited(from: &str, to: &str) -> String {
    assert!(BASE.contains(from), "{from}");
    BASE.replacen(from, to, 1)
}

/// Asserts exactly one error, containing every fragment.
fn assert_error(yaml: &str, fragments: &[&str]) {
    let (errors, _) = problems(yaml);
    assert_eq!(errors.len(), 1, "{errors:#?}");
    for f in fragments {
        assert!(errors[0].contains(f), "{:?} lacks {f:?}", errors[0]);
    }
}

#[test]
fn base_profile_is_valid() {
    assert_eq!(problems(BASE), (vec![], vec![]));
}

#[test]
fn microcloud_initiator_and_initiator_address_are_exclusive() {
    let both = edited(
        "  initiator: pi1\n",
        "  initiator: pi1\n  initiator_address: 192.168.1.11\n",
    );
    assert_error(&both, &["microcloud.initiator:", "not both"]);
}

#[test]
fn microcloud_needs_an_initiator() {
    assert_error(
        &edited("  initiator: pi1\n", ""),
        &["microcloud.initiator:", "set initiator"],
    );
}

#[test]
fn microcloud_initiator_needs_lookup_subnet() {
    assert_error(
        &edited("  lookup_subnet: 192.168.1.0/24\n", ""),
        &["microcloud.lookup_subnet:"],
    );
}

#[test]
fn microcloud_initiator_must_be_a_node() {
    assert_error(
        &edited("  initiator: pi1\n", "  initiator: pi9\n"),
        &["microcloud.initiator:", "pi9 is not a node"],
    );
}

#[test]
fn microcloud_every_address_inside_lookup_subnet() {
    let yaml = edited(
        "lookup_subnet: 192.168.1.0/24",
        "lookup_subnet: 192.168.1.0/29",
    );
    let (errors, _) = problems(&yaml);
    assert_eq!(errors.len(), 3, "{errors:#?}");
    assert!(
        errors[0].contains(
            "node pi1: network.address: 192.168.1.11 is outside microcloud.lookup_subnet"
        )
    );
}

#[test]
fn microcloud_initiator_address_forbids_lookup_subnet() {
    let yaml = edited("  initiator: pi1\n", "  initiator_address: 192.168.1.11\n");
    assert_error(&yaml, &["microcloud.lookup_subnet:", "goes with initiator"]);
}

#[test]
fn microcloud_initiator_address_must_be_a_node_address() {
    let yaml = edited(
        "  initiator: pi1\n  lookup_subnet: 192.168.1.0/24\n",
        "  initiator_address: 192.168.1.99\n",
    );
    assert_error(&yaml, &["microcloud.initiator_address:", "192.168.1.99"]);
}

#[test]
fn microcloud_passphrase_is_required_with_more_than_one_node() {
    assert_error(
        &edited("  session_passphrase: {value: secret}\n", ""),
        &["microcloud.session_passphrase:"],
    );
}

#[test]
fn microcloud_passphrase_is_optional_for_one_node() {
    let one = "
nodes:
  - hostname: solo
    image: {os: ubuntu-24.04}
    board: rpi5
    network: {address: 10.0.0.5/24}
    allow_no_login: true
microcloud: {initiator: solo, lookup_subnet: 10.0.0.0/24}
";
    assert_eq!(problems(one).0, Vec::<String>::new());
}

#[test]
fn microcloud_passphrase_from_a_missing_env_var_is_an_error() {
    let yaml = edited("{value: secret}", "{env: HOMELAB_TEST_UNSET_VARIABLE}");
    assert_error(
        &yaml,
        &[
            "microcloud.session_passphrase:",
            "HOMELAB_TEST_UNSET_VARIABLE is not set",
        ],
    );
}

#[test]
fn microcloud_uplink_on_all_nodes_or_none() {
    let yaml = edited(
        "    network: {address: 192.168.1.13/24, mac: 'dc:a6:32:00:00:03'}",
        "    network: {address: 192.168.1.13/24, mac: 'dc:a6:32:00:00:03', uplink: {vlan: 0}}",
    );
    // pi3's uplink is refused (with the default's nic it names two
    // kinds): that one error, not also "needs the uplink on all nodes".
    let (errors, _) = problems(&yaml);
    assert_eq!(
        errors,
        ["node pi3: network.uplink: set exactly one of nic, vlan and bridge"],
        "{errors:#?}"
    );
    let none_on_pi3 = BASE.replace("    uplink: {nic: eth1}\n", "").replace(
        "    network: {address: 192.168.1.11/24, mac: 'dc:a6:32:00:00:01'}",
        "    network: {address: 192.168.1.11/24, mac: 'dc:a6:32:00:00:01', uplink: {nic: eth1}}",
    );
    let (errors, _) = problems(&none_on_pi3);
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert!(
        errors[0].starts_with("node pi2: network.uplink:") && errors[0].contains("pi1 has one"),
        "{errors:#?}"
    );
}

#[test]
fn microcloud_uplink_needs_an_ovn_gateway() {
    let yaml = edited(
        "  ovn: {ipv4_gateway: 192.168.1.1/24, ipv4_range: 192.168.1.200-192.168.1.250}\n",
        "",
    );
    assert_error(&yaml, &["microcloud.ovn:", "ipv4_gateway"]);
}

#[test]
fn microcloud_ovn_range_inside_the_gateway_subnet() {
    let yaml = edited("192.168.1.200-192.168.1.250", "192.168.2.200-192.168.2.250");
    assert_error(&yaml, &["microcloud.ovn.ipv4_range:"]);
}

#[test]
fn microcloud_ceph_on_fewer_than_three_nodes_is_a_warning() {
    let yaml = BASE
        .replace("    storage: {ceph: [/dev/disk/by-id/usb-ssd-1]}\n", "")
        .replace("    storage: {ceph: [/dev/disk/by-id/usb-ssd-2]}\n", "");
    let (errors, warnings) = problems(&yaml);
    assert!(errors.is_empty(), "{errors:#?}");
    assert_eq!(warnings.len(), 1);
    assert!(
        warnings[0].contains("Ceph with disks on 1 node(s)"),
        "{warnings:?}"
    );
}

#[test]
fn microcloud_zero_timeouts_are_refused() {
    let yaml = edited(
        "  initiator: pi1\n",
        "  initiator: pi1\n  lookup_timeout: 0\n",
    );
    assert_error(&yaml, &["microcloud.lookup_timeout:"]);
}

#[test]
fn duplicate_hostnames_addresses_and_macs_are_refused() {
    let yaml = BASE
        .replace("hostname: pi2", "hostname: pi1")
        .replace("192.168.1.13/24", "192.168.1.12/24")
        .replace("dc:a6:32:00:00:03", "dc:a6:32:00:00:01");
    let (errors, _) = problems(&yaml);
    let joined = errors.join("\n");
    assert!(
        joined.contains("node pi1: hostname: pi1 is also the hostname of the node at line "),
        "{joined}"
    );
    assert!(
        joined.contains("node pi3: network.address: 192.168.1.12 is also node pi1's address"),
        "{joined}"
    );
    assert!(
        joined.contains("node pi3: network.mac: dc:a6:32:00:00:01 is also used by node pi1"),
        "{joined}"
    );
}

#[test]
fn addresses_outside_the_subnet_are_refused() {
    // Also outside the gateway's and MicroCloud's subnet, but that is
    // the same mistake: one error.
    let (errors, _) = problems(&edited("192.168.1.12/24", "192.168.7.12/24"));
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(
        errors[0],
        "node pi2: network.address: 192.168.7.12/24 is outside the subnet 192.168.1.0/24"
    );
    assert_error(
        &edited("192.168.1.12/24", "192.168.1.255/24"),
        &["node pi2: network.address:", "broadcast"],
    );
}

#[test]
fn gateways_outside_the_subnet_or_on_a_node_are_refused() {
    // The gateway is written once, in defaults: one error, there.
    let (errors, _) = problems(&edited("gateway: 192.168.1.1", "gateway: 10.0.0.1"));
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(errors[0].contains("defaults.network.gateway: 10.0.0.1 is outside the subnet"));
    let (errors, _) = problems(&edited("gateway: 192.168.1.1", "gateway: 192.168.1.12"));
    assert!(
        errors.iter().any(|e| e.contains(
            "node pi2: defaults.network.gateway: 192.168.1.12 is this node's own address"
        )),
        "{errors:#?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.contains("defaults.network.gateway: 192.168.1.12 is node pi2's address")),
        "{errors:#?}"
    );
}

#[test]
fn plaintext_passwords_need_the_opt_in() {
    let with_key = BASE
        .lines()
        .find(|l| l.contains("{name: alice, ssh_keys:"))
        .expect("BASE has alice");
    let yaml = edited(with_key, "    - {name: alice, password: {value: hunter2}}");
    let (errors, _) = problems(&yaml);
    assert_eq!(errors.len(), 1, "once, in defaults: {errors:#?}");
    assert!(
        errors[0].contains(
            "defaults.users[0].password: a plaintext password is refused unless you opt in"
        )
    );
    assert!(
        !errors.join("").contains("hunter2"),
        "the password must not be echoed"
    );
    let opted = yaml.replace(
        "password: {value: hunter2}}",
        "password: {value: hunter2}, hash_password: true}",
    );
    assert!(problems(&opted).0.is_empty());
}

#[test]
fn node_only_fields_are_refused_in_defaults() {
    let yaml = edited(
        "    gateway: 192.168.1.1\n",
        "    gateway: 192.168.1.1\n    address: 192.168.1.50/24\n",
    );
    assert_error(&yaml, &["defaults.network.address:", "belongs in a node"]);
}

#[test]
fn ubuntu_needs_a_raspberry_pi_board() {
    let yaml = "
nodes:
  - hostname: rock1
    image: {os: ubuntu-24.04}
    board: rock-5b
    network: {address: 10.0.0.5/24}
    allow_no_login: true
";
    assert_error(
        yaml,
        &[
            "node rock1: board:",
            "ubuntu-24.04 images run only on rpi4 or rpi5",
        ],
    );
}

#[test]
fn every_error_is_reported_at_once() {
    let yaml = BASE
        .replace("hostname: pi2", "hostname: pi1")
        .replace("gateway: 192.168.1.1", "gateway: 10.0.0.1")
        .replace("  session_passphrase: {value: secret}\n", "");
    let (errors, _) = problems(&yaml);
    // The gateway written in defaults is one error, not one per node.
    assert_eq!(errors.len(), 4, "{errors:#?}");
}

#[test]
fn catalog_images_must_exist_match_the_os_and_run_on_the_board() {
    let one = |image: &str, board: &str| {
        format!(
            "
nodes:
  - hostname: n1
    image: {image}
    board: {board}
    network: {{address: 10.0.0.5/24}}
    allow_no_login: true
"
        )
    };
    assert_error(
        &one("{os: ubuntu-24.04, catalog: nosuch}", "rpi4"),
        &[
            "node n1: image.catalog:",
            "\"nosuch\" is not in the catalog",
            "ubuntu-24.04-raspi",
        ],
    );
    assert_error(
        &one("{os: ubuntu-24.04, catalog: armbian-rpi4b}", "rpi4"),
        &["armbian-rpi4b is an armbian image, but image.os is ubuntu-24.04"],
    );
    assert_error(
        &one("{os: ubuntu-22.04, catalog: ubuntu-22.04-raspi}", "rpi5"),
        &["ubuntu-22.04-raspi is for rpi4, not rpi5"],
    );
    assert_error(
        &one("{os: ubuntu-22.04}", "rpi5"),
        &["node n1: image:", "no ubuntu-22.04 image for rpi5"],
    );
    assert_error(
        &one("{os: armbian}", "nanopi-r6s"),
        &["no armbian image for nanopi-r6s", "image.url"],
    );
    for ok in [
        one("{os: armbian, catalog: armbian-rpi4b}", "rpi5"),
        one("{os: armbian}", "orangepi5"),
        one(
            &format!(
                "{{os: armbian, url: 'https://example.invalid/a.img.xz', sha256: {}}}",
                "ab".repeat(32)
            ),
            "nanopi-r6s",
        ),
    ] {
        assert_eq!(problems(&ok).0, Vec::<String>::new(), "{ok}");
    }
}
