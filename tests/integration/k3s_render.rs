//! What a k3s node is rendered and built with (issue 17), judged by tools
//! we did not write: PyYAML reads each role's `config.yaml` to the
//! mapping k3s is meant to see, `systemd-analyze verify` accepts the
//! units, shellcheck the first-boot script; golden files pin the whole
//! rendering; `render` hides the token; and the binary, streamed from a
//! cache file into a fixture image, reads back byte for byte with debugfs
//! on a file system e2fsck finds clean, with the Pi's cgroup tokens added
//! to `cmdline.txt` once.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use homelab_image::profile::k3s::K3sRole;
use homelab_image::render::k3s::{
    AGENT_UNIT, BINARY_PATH, CONFIG_PATH, K3sFiles, SERVER_UNIT, unit_path,
};
use homelab_image::render::tree::to_text;
use homelab_image::render::{BaseInfo, CachedBlob, FileKind, FileSpec, firstboot, node_on};
use serde_json::json;

use crate::profile_support::{bin, file, render_profile, repo, tempdir};

/// Three servers (etcd), one Armbian agent on a Pi, one on a Rock 5B.
const HA: &str = "\
defaults:
  image: {os: ubuntu-24.04}
  board: rpi4
  domain: lab.home.arpa
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
  - hostname: pi4
    image: {os: armbian}
    network: {address: 192.168.1.14/24}
    node_labels: [disk=ssd]
    node_taints: [\"gpu=yes:NoSchedule\"]
  - hostname: rock1
    image: {os: armbian}
    board: rock-5b
    network: {interface: end1, address: 192.168.1.21/24}
k3s:
  version: v1.31.4+k3s1
  servers: [pi1, pi2, pi3]
  token: {value: s3cr3t-k3s-token}
  tls_san: [k8s.lab.home.arpa]
  disable: [traefik]
  cluster_cidr: 10.52.0.0/16
  service_cidr: 10.53.0.0/16
";

fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running {program}: {e} (the test command installs it)"))
}

fn text(o: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn write_profile(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join("homelab.yaml");
    std::fs::write(&p, text).expect("write profile");
    p
}

fn specs_of<'a>(r: &'a crate::profile_support::Rendered, node: &str) -> &'a [FileSpec] {
    &r.nodes
        .iter()
        .find(|(n, _)| n == node)
        .unwrap_or_else(|| panic!("no node {node}"))
        .1
}

/// PyYAML's view of `bytes`, as JSON.
fn pyyaml(dir: &Path, bytes: &[u8]) -> serde_json::Value {
    let path = dir.join("config.yaml");
    std::fs::write(&path, bytes).expect("write");
    let code = "import json,sys,yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1], encoding='utf-8'))))";
    let o = run(
        "/usr/bin/python3",
        &["-c", code, path.to_str().expect("utf-8")],
    );
    assert!(o.status.success(), "{}", text(&o));
    serde_json::from_slice(&o.stdout).expect("python printed JSON")
}

#[test]
fn pyyaml_reads_each_roles_config_as_k3s_should_see_it() {
    let dir = tempdir();
    let r = render_profile(&write_profile(dir.path(), HA));
    let config = |node: &str| {
        let specs = specs_of(&r, node);
        let spec = specs
            .iter()
            .find(|s| s.path == CONFIG_PATH)
            .expect("config");
        assert_eq!(spec.mode, 0o600, "{node}: the config holds the token");
        pyyaml(dir.path(), spec.bytes().expect("a file"))
    };
    assert_eq!(
        config("pi1"),
        json!({
            "cluster-init": true,
            "token": "s3cr3t-k3s-token",
            "node-name": "pi1",
            "node-ip": "192.168.1.11",
            "tls-san": ["192.168.1.11", "pi1.lab.home.arpa", "k8s.lab.home.arpa"],
            "disable": ["traefik"],
            "cluster-cidr": "10.52.0.0/16",
            "service-cidr": "10.53.0.0/16",
        })
    );
    // Joiners pin the server CA: K10<sha256 of server-ca.crt>::server:<secret>.
    let full = &r.state.k3s.as_ref().expect("k3s state").full_token;
    assert!(full.starts_with("K10") && full.ends_with("::server:s3cr3t-k3s-token"));
    assert_eq!(
        config("pi3"),
        json!({
            "server": "https://192.168.1.11:6443",
            "token": full,
            "node-name": "pi3",
            "node-ip": "192.168.1.13",
            "tls-san": ["192.168.1.13", "pi3.lab.home.arpa", "k8s.lab.home.arpa"],
            "disable": ["traefik"],
            "cluster-cidr": "10.52.0.0/16",
            "service-cidr": "10.53.0.0/16",
        })
    );
    // Agents get none of the server-only keys, which k3s agent refuses.
    assert_eq!(
        config("pi4"),
        json!({
            "server": "https://192.168.1.11:6443",
            "token": full,
            "node-name": "pi4",
            "node-ip": "192.168.1.14",
            "node-label": ["disk=ssd"],
            "node-taint": ["gpu=yes:NoSchedule"],
        })
    );
}

#[test]
fn each_node_gets_its_roles_unit_and_no_other() {
    let dir = tempdir();
    let r = render_profile(&write_profile(dir.path(), HA));
    for (node, role) in [
        ("pi1", K3sRole::FirstServer),
        ("pi2", K3sRole::Server),
        ("rock1", K3sRole::Agent),
    ] {
        let specs = specs_of(&r, node);
        let other = if role.is_server() {
            AGENT_UNIT
        } else {
            SERVER_UNIT
        };
        assert!(file(specs, &unit_path(role)).is_some(), "{node}");
        assert!(
            !specs.iter().any(|s| s.path.ends_with(other)),
            "{node} has {other}"
        );
        // Not enabled in the image: the first-boot unit starts it.
        assert!(
            !specs.iter().any(|s| s.path.contains(".wants/k3s")),
            "{node}: k3s is enabled at build time"
        );
        let script = String::from_utf8(file(specs, firstboot::SCRIPT_PATH).unwrap().to_vec())
            .expect("utf-8");
        assert!(script.contains(&format!(
            "readonly K3S_UNIT='{}'",
            unit_path(role).rsplit('/').next().unwrap()
        )));
        assert!(script.contains(&format!("readonly K3S_ROLE='{}'", role.name())));
        // No MicroCloud steps on a k3s node.
        assert!(script.contains("readonly SETUP_MICROCLOUD=0\n"), "{node}");
        assert!(script.contains("readonly INSTALL_SNAPD=0\n"), "{node}");
        assert!(script.contains("    start_k3s || return 1\n"), "{node}");
    }
}

/// systemd-analyze verify wants ExecStart's program to exist here: the
/// copy it checks runs a stand-in (`/bin/true`); nothing else changes.
/// Any output at all fails (verify exits 0 on unknown keys).
#[test]
fn the_k3s_units_pass_systemd_analyze_verify() {
    let dir = tempdir();
    let r = render_profile(&write_profile(dir.path(), HA));
    for (node, role) in [("pi1", K3sRole::FirstServer), ("rock1", K3sRole::Agent)] {
        let unit = String::from_utf8(file(specs_of(&r, node), &unit_path(role)).unwrap().to_vec())
            .expect("utf-8");
        let exec = format!("ExecStart={BINARY_PATH} ");
        assert!(unit.contains(&exec), "{node}");
        assert!(unit.contains("Type=notify") && unit.contains("Delegate=yes"));
        let patched = unit.replace(&exec, "ExecStart=/bin/true ");
        let out = tempdir();
        let name = unit_path(role).rsplit('/').next().unwrap().to_owned();
        let path = out.path().join(&name);
        std::fs::write(&path, patched).expect("write unit");
        let o = run("systemd-analyze", &["verify", path.to_str().unwrap()]);
        assert!(
            o.status.success() && o.stderr.is_empty() && o.stdout.is_empty(),
            "{node}: {}",
            text(&o)
        );
    }
}

#[test]
fn the_k3s_first_boot_script_passes_bash_n_and_shellcheck() {
    let dir = tempdir();
    let r = render_profile(&write_profile(dir.path(), HA));
    for node in ["pi1", "pi4", "rock1"] {
        let path = dir.path().join(format!("{node}.sh"));
        std::fs::write(
            &path,
            file(specs_of(&r, node), firstboot::SCRIPT_PATH).unwrap(),
        )
        .expect("write");
        let s = path.to_str().unwrap();
        let o = run("bash", &["-n", s]);
        assert!(
            o.status.success() && o.stderr.is_empty(),
            "{node}: {}",
            text(&o)
        );
        let o = run("shellcheck", &["--shell=bash", "--severity=style", s]);
        assert!(o.status.success(), "{node}: {}", text(&o));
    }
}

/// The good k3s profile rendered with a seeded state directory made at a
/// fixed time (the certificates are dated by it).
fn render_fixed(path: &Path) -> Vec<(String, String)> {
    use homelab_image::profile::resolve::Context;
    use homelab_image::profile::state::{SeededEntropy, State};
    let profile = homelab_image::profile::load(path).unwrap();
    let ctx = Context {
        profile_path: path.to_owned(),
        home: None,
        env: Box::new(|_| None),
    };
    let mut cluster = homelab_image::profile::resolve(&profile, &ctx)
        .unwrap()
        .cluster;
    let dir = tempdir();
    cluster.state_dir = dir.path().to_owned();
    let state = State::prepare_at(
        &cluster,
        &mut SeededEntropy::new(b"k3s.yaml"),
        1_767_225_600,
    )
    .unwrap();
    cluster
        .nodes
        .iter()
        .map(|n| {
            let specs = homelab_image::render::node(n, &cluster, &state).unwrap();
            (n.hostname.to_string(), to_text(&specs).unwrap())
        })
        .collect()
}

#[test]
fn golden_files_pin_the_k3s_rendering() {
    let path = repo().join("tests/profiles/good/k3s.yaml");
    let (a, b) = (render_fixed(&path), render_fixed(&path));
    assert_eq!(a, b, "the same state gives the same bytes");
    for (node, text) in &a {
        crate::render_golden::check_golden(&format!("k3s/{node}.txt"), text);
    }
}

#[test]
fn only_the_first_server_gets_the_cluster_cas_and_its_keys_are_private() {
    let dir = tempdir();
    let r = render_profile(&write_profile(dir.path(), HA));
    let tls = "/var/lib/rancher/k3s/server/tls/";
    let first = specs_of(&r, "pi1");
    for name in [
        "server-ca",
        "client-ca",
        "request-header-ca",
        "etcd/server-ca",
        "etcd/peer-ca",
    ] {
        let crt = first
            .iter()
            .find(|s| s.path == format!("{tls}{name}.crt"))
            .expect(name);
        let key = first
            .iter()
            .find(|s| s.path == format!("{tls}{name}.key"))
            .expect(name);
        assert_eq!((crt.mode, key.mode), (0o644, 0o600), "{name}");
    }
    let dirmode = first
        .iter()
        .find(|s| s.path == tls.trim_end_matches('/'))
        .unwrap();
    assert_eq!(dirmode.mode, 0o700);
    for node in ["pi2", "pi3", "pi4", "rock1"] {
        assert!(
            !specs_of(&r, node).iter().any(|s| s.path.starts_with(tls)),
            "{node} got CA files"
        );
    }
}

#[test]
fn render_hides_the_k3s_token_unless_asked() {
    let dir = tempdir();
    let p = write_profile(dir.path(), HA);
    let render = |extra: &[&str]| {
        let out = bin()
            .arg("--profile")
            .arg(&p)
            .args(["render", "--node", "pi2"])
            .args(extra)
            .output()
            .expect("render");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).expect("utf-8")
    };
    let hidden = render(&[]);
    assert!(!hidden.contains("s3cr3t-k3s-token"), "{hidden}");
    // pi2 joins: its token is the full one (K10, 64 hex digits,
    // ::server:, the 16-byte secret: 92 bytes).
    assert!(
        hidden.contains("token: <secret: 92 bytes, hidden"),
        "{hidden}"
    );
    let shown = render(&["--show-secrets"]);
    assert!(shown.contains("::server:s3cr3t-k3s-token"));
    // The first server's CA keys are hidden, its certificates shown.
    let first = {
        let out = bin()
            .arg("--profile")
            .arg(&p)
            .args(["render", "--node", "pi1"])
            .output()
            .expect("render");
        String::from_utf8(out.stdout).expect("utf-8")
    };
    assert!(!first.contains("PRIVATE KEY"), "a CA key is shown");
    assert!(first.contains("BEGIN CERTIFICATE"));
    let tree = dir.path().join("tree");
    let out = bin()
        .arg("--profile")
        .arg(&p)
        .args(["render", "--node", "pi2", "--out"])
        .arg(&tree)
        .output()
        .expect("render --out");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(tree.join(format!("root{CONFIG_PATH}")))
        .expect("config in the tree")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

/// A stand-in binary: 6 MiB of a pattern that differs in every block, so a
/// misplaced or repeated extent shows.
fn stand_in_binary(dir: &Path) -> CachedBlob {
    let mut bytes = Vec::with_capacity(6 << 20);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    while bytes.len() < 6 << 20 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        bytes.extend_from_slice(&x.to_le_bytes());
    }
    let path = dir.join("k3s-arm64");
    std::fs::write(&path, &bytes).expect("write binary");
    CachedBlob {
        path,
        sha256: homelab_image::digest::Sha256::of(&bytes),
        len: bytes.len() as u64,
    }
}

fn extract(img: &Path, n: u64, dst: &Path) {
    let (start, len) = crate::util::our_partition(img, n);
    crate::util::extract_partition(img, start, len, dst);
}

/// Builds `node` of the HA profile onto a copy of `fixture` through the
/// library (render with the stand-in in the cache, patch, self-check) and
/// judges the result.
fn build_onto(fixture: &str, node: &str, dir: &Path) -> PathBuf {
    let r = render_profile(&write_profile(dir, HA));
    let blob = stand_in_binary(dir);
    let n = r.cluster.node(node).expect("node");
    let base = BaseInfo {
        k3s: K3sFiles {
            binary: Some(blob.clone()),
            airgap: None,
        },
        ..BaseInfo::default()
    };
    let specs = node_on(n, &r.cluster, &r.state, &base).expect("render");
    let cached = specs
        .iter()
        .find(|s| s.path == BINARY_PATH)
        .expect("the binary");
    assert!(matches!(cached.kind, FileKind::Cached { .. }));
    let img = crate::util::copy_fixture(fixture, dir);
    let (image, edit) = homelab_image::image::Image::open_edit(&img).expect("open");
    let expect = homelab_image::build::patch::apply(&image, &specs, 1_700_000_000).expect("apply");
    drop(image);
    edit.commit().expect("commit");
    homelab_image::build::patch::verify(&img, &expect).expect("self-check");
    let root = dir.join("root.ext4");
    extract(&img, 2, &root);
    crate::ext4_support::assert_fsck_clean(&root, &format!("{fixture} root"));
    let got = dir.join("k3s.read");
    let o = run(
        "debugfs",
        &[
            "-R",
            &format!("dump {BINARY_PATH} {}", got.display()),
            root.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        std::fs::read(&got).expect("dumped") == std::fs::read(&blob.path).expect("served"),
        "{fixture}: the binary read back differs"
    );
    let o = run(
        "debugfs",
        &["-R", &format!("stat {BINARY_PATH}"), root.to_str().unwrap()],
    );
    let stat = String::from_utf8_lossy(&o.stdout);
    assert!(stat.contains("Mode:  0755"), "{stat}");
    let o = run(
        "debugfs",
        &["-R", "stat /usr/local/bin/kubectl", root.to_str().unwrap()],
    );
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("Fast link dest: \"k3s\""),
        "{}",
        text(&o)
    );
    let boot = dir.join("boot.fat");
    extract(&img, 1, &boot);
    let o = run("fsck.fat", &["-n", boot.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o));
    img
}

fn cmdline(dir: &Path) -> String {
    let boot = dir.join("boot.fat");
    let o = run("mtype", &["-i", boot.to_str().unwrap(), "::cmdline.txt"]);
    assert!(o.status.success(), "{}", text(&o));
    String::from_utf8(o.stdout).expect("utf-8")
}

#[test]
fn a_built_ubuntu_server_holds_the_streamed_binary_and_the_cgroup_tokens() {
    let dir = tempdir();
    build_onto("ubuntu-raspi.img", "pi1", dir.path());
    let line = cmdline(dir.path());
    for token in ["cgroup_memory=1", "cgroup_enable=memory", "ds=nocloud"] {
        assert_eq!(
            line.split_whitespace().filter(|t| *t == token).count(),
            1,
            "{token} in {line}"
        );
    }
}

#[test]
fn a_built_armbian_pi_agent_keeps_its_cgroup_tokens_once() {
    let dir = tempdir();
    build_onto("armbian-rpi.img", "pi4", dir.path());
    let line = cmdline(dir.path());
    // Armbian's bcm2711 line has them already: added once, not twice.
    for token in ["cgroup_memory=1", "cgroup_enable=memory"] {
        assert_eq!(
            line.split_whitespace().filter(|t| *t == token).count(),
            1,
            "{token} in {line}"
        );
    }
}

#[test]
fn a_binary_not_in_the_cache_stops_the_build_and_says_how_to_get_it() {
    let dir = tempdir();
    let r = render_profile(&write_profile(dir.path(), HA));
    let n = r.cluster.node("pi1").expect("node");
    let specs = node_on(n, &r.cluster, &r.state, &BaseInfo::default()).expect("render");
    let img = crate::util::copy_fixture("ubuntu-raspi.img", dir.path());
    let before = std::fs::read(&img).expect("read");
    let (image, _edit) = homelab_image::image::Image::open_edit(&img).expect("open");
    let e =
        homelab_image::build::patch::apply(&image, &specs, 1_700_000_000).expect_err("no binary");
    let msg = format!("{e:#}");
    assert!(
        msg.contains("k3s v1.31.4+k3s1 arm64 binary") && msg.contains("homelab-image pull"),
        "{msg}"
    );
    drop(image);
    assert!(
        std::fs::read(&img).expect("read") == before,
        "the image changed"
    );
}
