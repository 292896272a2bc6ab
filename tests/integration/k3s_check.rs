//! `check` on a profile with a `k3s:` section (issue 17): each refusal is
//! made at the file:line:column where the offending value is written, one
//! test per message, and a good k3s profile passes.

use std::path::{Path, PathBuf};

use crate::profile_support::{bin, repo, tempdir};

const NODES: &str = "\
defaults:
  image: {os: ubuntu-24.04}
  board: rpi4
  users:
    - name: alice
      ssh_keys:
        - ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMxSAMby/XGYsjcC5K1MDkK2b2DTWIdw+3mOB8HYPwp7 alice@laptop
nodes:
  - hostname: pi1
    network: {address: 192.168.1.11/24}
  - hostname: pi2
    network: {address: 192.168.1.12/24}
  - hostname: pi3
    network: {address: 192.168.1.13/24}
";

fn write(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join("homelab.yaml");
    std::fs::write(&p, text).expect("write profile");
    p
}

/// `line:column` of the `nth` (0-based) occurrence of `needle` in `text`.
fn at(text: &str, needle: &str, nth: usize) -> String {
    let offset = text
        .match_indices(needle)
        .nth(nth)
        .unwrap_or_else(|| panic!("{needle:?} #{nth} not in profile"))
        .0;
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = offset - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    format!("{line}:{column}")
}

/// Runs `check` on `text` and asserts it fails with one line that starts
/// at `needle`'s position and holds every fragment.
pub(crate) fn refused_at(text: &str, needle: &str, nth: usize, fragments: &[&str]) {
    let dir = tempdir();
    let path = write(dir.path(), text);
    let out = bin()
        .arg("--profile")
        .arg(&path)
        .arg("check")
        .output()
        .expect("run check");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let prefix = format!("{}:{}: ", path.display(), at(text, needle, nth));
    let line = stderr
        .lines()
        .map(|l| l.strip_prefix("error: ").unwrap_or(l))
        .find(|l| l.starts_with(&prefix) && fragments.iter().all(|f| l.contains(f)))
        .unwrap_or_else(|| panic!("no line {prefix}… with {fragments:?} in:\n{stderr}"));
    assert!(!line.is_empty());
}

#[test]
fn k3s_and_microcloud_together_are_refused() {
    let text = format!(
        "{NODES}microcloud:\n  initiator: pi1\n  lookup_subnet: 192.168.1.0/24\n  \
         session_passphrase: {{generate: true}}\nk3s:\n  version: v1.31.4+k3s1\n  \
         servers: [pi1]\n"
    );
    refused_at(
        &text,
        "version: v1",
        0,
        &["k3s: ", "k3s or microcloud, not both"],
    );
}

#[test]
fn an_even_number_of_servers_is_refused() {
    let text = format!("{NODES}k3s:\n  version: v1.31.4+k3s1\n  servers: [pi1, pi2]\n");
    refused_at(
        &text,
        "[pi1, pi2]",
        0,
        &[
            "k3s.servers: ",
            "embedded etcd needs a majority: 1, 3 or 5 servers",
        ],
    );
}

#[test]
fn a_server_that_is_no_node_is_refused() {
    let text = format!("{NODES}k3s:\n  version: v1.31.4+k3s1\n  servers: [pi9]\n");
    refused_at(
        &text,
        "pi9",
        0,
        &["k3s.servers[0]: ", "pi9 is not a node of this profile"],
    );
}

#[test]
fn an_agent_that_is_no_node_is_refused() {
    let text = format!(
        "{NODES}k3s:\n  version: v1.31.4+k3s1\n  servers: [pi1]\n  agents: [pi2, pi3, pi4]\n"
    );
    refused_at(
        &text,
        "pi4]",
        0,
        &["k3s.agents[2]: ", "pi4 is not a node of this profile"],
    );
}

#[test]
fn a_node_in_both_lists_is_refused() {
    let text = format!(
        "{NODES}k3s:\n  version: v1.31.4+k3s1\n  servers: [pi1]\n  agents: [pi2, pi3, pi1]\n"
    );
    refused_at(
        &text,
        "pi1]",
        1,
        &["k3s.agents[2]: ", "pi1 is already listed in k3s.servers[0]"],
    );
}

#[test]
fn a_node_in_neither_list_is_refused_when_agents_are_listed() {
    let text = format!("{NODES}k3s:\n  version: v1.31.4+k3s1\n  servers: [pi1]\n  agents: [pi2]\n");
    refused_at(
        &text,
        "[pi2]",
        0,
        &[
            "k3s.agents: ",
            "node pi3 is in neither k3s.servers nor k3s.agents",
        ],
    );
}

#[test]
fn a_server_without_a_static_address_is_refused() {
    let text = NODES.replace(
        "    network: {address: 192.168.1.11/24}\n",
        "    board: rpi4\n",
    ) + "k3s:\n  version: v1.31.4+k3s1\n  servers: [pi1]\n";
    refused_at(
        &text,
        "hostname: pi1",
        0,
        &[
            "node pi1: network.address: ",
            "every node needs a static address",
        ],
    );
}

#[test]
fn overlapping_cluster_and_service_cidrs_are_refused() {
    let text = format!(
        "{NODES}k3s:\n  version: v1.31.4+k3s1\n  servers: [pi1]\n  \
         cluster_cidr: 10.40.0.0/14\n  service_cidr: 10.42.0.0/16\n"
    );
    refused_at(
        &text,
        "10.42.0.0/16",
        0,
        &[
            "k3s.service_cidr: ",
            "(cluster_cidr) and the service range",
            "overlap",
        ],
    );
}

#[test]
fn a_cidr_over_the_lan_is_refused() {
    let text = format!(
        "{NODES}k3s:\n  version: v1.31.4+k3s1\n  servers: [pi1]\n  \
         cluster_cidr: 192.168.0.0/16\n"
    );
    refused_at(
        &text,
        "192.168.0.0/16",
        0,
        &[
            "k3s.cluster_cidr: ",
            "overlaps the LAN 192.168.1.0/24 of node pi1",
        ],
    );
}

#[test]
fn a_lan_inside_the_default_service_cidr_is_refused() {
    let text = NODES.replace("192.168.1.", "10.43.7.")
        + "k3s:\n  version: v1.31.4+k3s1\n  servers: [pi1]\n";
    refused_at(
        &text,
        "version: v1",
        0,
        &[
            "k3s: ",
            "10.43.0.0/16 (k3s's default) overlaps the LAN 10.43.7.0/24",
            "set k3s.service_cidr",
        ],
    );
}

#[test]
fn a_cidr_that_is_not_a_network_address_is_refused() {
    let text = format!(
        "{NODES}k3s:\n  version: v1.31.4+k3s1\n  servers: [pi1]\n  \
         cluster_cidr: 10.42.0.1/16\n"
    );
    refused_at(
        &text,
        "10.42.0.1/16",
        0,
        &["k3s.cluster_cidr: ", "did you mean 10.42.0.0/16?"],
    );
}

#[test]
fn a_version_that_is_not_an_exact_release_is_refused() {
    let text = format!("{NODES}k3s:\n  version: latest\n  servers: [pi1]\n");
    refused_at(
        &text,
        "latest",
        0,
        &["k3s.version: ", "not an exact release"],
    );
}

#[test]
fn an_unknown_component_is_refused_with_a_suggestion() {
    let text = format!(
        "{NODES}k3s:\n  version: v1.31.4+k3s1\n  servers: [pi1]\n  disable: [traefik, servicelbb]\n"
    );
    refused_at(
        &text,
        "servicelbb",
        0,
        &[
            "k3s.disable[1]: ",
            "not a packaged component of k3s",
            "did you mean servicelb?",
        ],
    );
}

#[test]
fn labels_without_k3s_are_refused() {
    let text = NODES.replace(
        "    network: {address: 192.168.1.12/24}\n",
        "    network: {address: 192.168.1.12/24}\n    node_labels: [disk=ssd]\n",
    );
    refused_at(
        &text,
        "[disk=ssd]",
        0,
        &["node pi2: node_labels: ", "there is no k3s section"],
    );
}

#[test]
fn taints_without_k3s_are_refused() {
    let text = NODES.replace(
        "  board: rpi4\n",
        "  board: rpi4\n  node_taints: [\"gpu=yes:NoSchedule\"]\n",
    );
    refused_at(
        &text,
        "[\"gpu",
        0,
        &["defaults.node_taints: ", "there is no k3s section"],
    );
}

#[test]
fn a_malformed_label_is_refused() {
    let text = NODES.replace(
        "    network: {address: 192.168.1.12/24}\n",
        "    network: {address: 192.168.1.12/24}\n    node_labels: [disk]\n",
    ) + "k3s:\n  version: v1.31.4+k3s1\n  servers: [pi1]\n";
    refused_at(
        &text,
        "disk]",
        0,
        &["node pi2: node_labels", "it has no `=`"],
    );
}

#[test]
fn a_label_the_kubelet_would_refuse_is_refused() {
    let text = NODES.replace(
        "    network: {address: 192.168.1.12/24}\n",
        "    network: {address: 192.168.1.12/24}\n    \
         node_labels: [node-role.kubernetes.io/worker=true]\n",
    ) + "k3s:\n  version: v1.31.4+k3s1\n  servers: [pi1]\n";
    refused_at(
        &text,
        "node-role",
        0,
        &["node pi2: node_labels", "the kubelet refuses to start"],
    );
}

#[test]
fn a_taint_with_an_unknown_effect_is_refused() {
    let text = NODES.replace(
        "    network: {address: 192.168.1.13/24}\n",
        "    network: {address: 192.168.1.13/24}\n    node_taints: [\"gpu=yes:Never\"]\n",
    ) + "k3s:\n  version: v1.31.4+k3s1\n  servers: [pi1]\n";
    refused_at(
        &text,
        "\"gpu=yes:Never",
        0,
        &[
            "node pi3: node_taints",
            "none of NoSchedule, PreferNoSchedule, NoExecute",
        ],
    );
}

#[test]
fn a_label_key_set_twice_on_a_node_is_refused() {
    let text = NODES.replace(
        "    network: {address: 192.168.1.12/24}\n",
        "    network: {address: 192.168.1.12/24}\n    node_labels: [disk=ssd, disk=hdd]\n",
    ) + "k3s:\n  version: v1.31.4+k3s1\n  servers: [pi1]\n";
    refused_at(
        &text,
        "disk=hdd",
        0,
        &[
            "node pi2: node_labels[1]: ",
            "already set by node_labels[0]",
        ],
    );
}

#[test]
fn an_unknown_k3s_key_is_refused() {
    let text = format!("{NODES}k3s:\n  version: v1.31.4+k3s1\n  servers: [pi1]\n  sever: [pi2]\n");
    refused_at(&text, "sever", 0, &["k3s.sever: ", "unknown key `sever`"]);
}

#[test]
fn a_token_with_a_colon_is_refused() {
    let text = format!(
        "{NODES}k3s:\n  version: v1.31.4+k3s1\n  servers: [pi1]\n  token: {{value: \"a:b\"}}\n"
    );
    refused_at(
        &text,
        "{value",
        0,
        &["k3s.token: ", "without spaces or `:`"],
    );
}

#[test]
fn the_good_k3s_profile_passes_check() {
    let out = bin()
        .arg("--profile")
        .arg(repo().join("tests/profiles/good/k3s.yaml"))
        .arg("check")
        .output()
        .expect("run check");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("ok (3 nodes"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
