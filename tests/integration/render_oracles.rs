//! Independent judges of rendered output (tools we did not write). They
//! fail, not skip, when a tool is missing; scripts/test installs them:
//! cloud-init (`cloud-init schema`), netplan.io (`netplan generate`),
//! systemd (`systemd-analyze verify`), shellcheck, python3-yaml (PyYAML,
//! the reader cloud-init uses) and perl (libxcrypt's `crypt()`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use homelab_image::profile::resolved::UserPassword;
use homelab_image::render::cloud_init::{password_hash, user_data};
use homelab_image::render::quirks::Quirks;
use homelab_image::render::tree::write_tree;
use homelab_image::render::{firstboot, microcloud, netplan};

use crate::profile_support::{Rendered, all_good_profiles, render_profile, tempdir};

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

/// Every node of every good profile, written out as a tree.
struct Trees {
    rendered: Vec<(PathBuf, Rendered)>,
    dir: tempfile::TempDir,
}

impl Trees {
    fn new() -> Self {
        let dir = tempdir();
        let rendered: Vec<(PathBuf, Rendered)> = all_good_profiles()
            .into_iter()
            .map(|p| {
                let r = render_profile(&p);
                (p, r)
            })
            .collect();
        for (p, r) in &rendered {
            for (node, specs) in &r.nodes {
                // The image's modes everywhere: the oracles judge those.
                let secret = vec![false; specs.len()];
                write_tree(&dir.path().join(Self::key(p, node)), node, specs, &secret)
                    .expect("write tree");
            }
        }
        Self { rendered, dir }
    }

    fn key(profile: &Path, node: &str) -> String {
        format!(
            "{}-{node}",
            profile.file_stem().expect("stem").to_string_lossy()
        )
    }

    /// (label, tree root) for every node.
    fn nodes(&self) -> Vec<(String, PathBuf)> {
        self.rendered
            .iter()
            .flat_map(|(p, r)| r.nodes.iter().map(move |(n, _)| Self::key(p, n)))
            .map(|k| (k.clone(), self.dir.path().join(k)))
            .collect()
    }
}

#[test]
fn every_user_data_passes_cloud_init_schema() {
    let trees = Trees::new();
    let mut checked = 0;
    for (label, root) in trees.nodes() {
        let ud = seed(&root, "user-data");
        if !ud.exists() {
            continue; // Armbian: no cloud-init
        }
        let o = run(
            "cloud-init",
            &["schema", "--config-file", ud.to_str().expect("utf-8 path")],
        );
        let out = text(&o);
        assert!(
            o.status.success() && out.contains("Valid cloud-config"),
            "{label}: {out}"
        );
        // cloud-init 22.4 prints an (empty) deprecations header; any
        // deprecated key we used would be listed after it.
        let deprecations =
            String::from_utf8_lossy(&o.stderr).replace("Cloud config schema deprecations:", "");
        assert!(deprecations.trim().is_empty(), "{label}: {out}");
        checked += 1;
    }
    assert!(checked >= 5, "only {checked} user-data files checked");
}

#[test]
fn every_network_config_passes_netplan_generate() {
    let trees = Trees::new();
    let mut checked = 0;
    for (label, root) in trees.nodes() {
        let candidates = [
            seed(&root, "network-config"),
            root.join("root/etc/netplan/30-homelab.yaml"),
        ];
        for src in candidates.iter().filter(|p| p.exists()) {
            let sandbox = tempdir();
            let netplan_dir = sandbox.path().join("etc/netplan");
            std::fs::create_dir_all(&netplan_dir).expect("mkdir");
            let dst = netplan_dir.join("50-cloud-init.yaml");
            std::fs::copy(src, &dst).expect("copy");
            std::fs::set_permissions(&dst, std::os::unix::fs::PermissionsExt::from_mode(0o600))
                .expect("chmod");
            let o = run(
                "netplan",
                &[
                    "generate",
                    "--root-dir",
                    sandbox.path().to_str().expect("utf-8"),
                ],
            );
            assert!(
                o.status.success() && o.stderr.is_empty(),
                "{label} {}: {}",
                src.display(),
                text(&o)
            );
            let networkd = sandbox.path().join("run/systemd/network");
            assert!(
                networkd.read_dir().is_ok_and(|mut d| d.next().is_some()),
                "{label}: netplan generated nothing"
            );
            checked += 1;
        }
    }
    assert!(checked >= 7, "only {checked} network files checked");
}

/// systemd-analyze verify needs ExecStart to exist and be executable on
/// this machine, so the test verifies a copy of the unit whose ExecStart
/// points at the rendered script inside the temp tree; nothing else in the
/// unit is changed. verify exits 0 even for unknown keys, so any output
/// at all fails the test.
#[test]
fn the_unit_passes_systemd_analyze_verify() {
    let trees = Trees::new();
    for (label, root) in trees.nodes() {
        let unit = std::fs::read_to_string(root.join(format!("root{}", firstboot::UNIT_PATH)))
            .expect("unit");
        let script = root.join(format!("root{}", firstboot::SCRIPT_PATH));
        let exec = format!("ExecStart={}", firstboot::SCRIPT_PATH);
        assert!(unit.contains(&exec), "{label}");
        let patched = unit.replace(&exec, &format!("ExecStart={}", script.display()));
        let dir = tempdir();
        let path = dir.path().join(firstboot::UNIT_NAME);
        std::fs::write(&path, patched).expect("write unit");
        let o = run(
            "systemd-analyze",
            &["verify", path.to_str().expect("utf-8")],
        );
        assert!(
            o.status.success() && o.stderr.is_empty() && o.stdout.is_empty(),
            "{label}: {}",
            text(&o)
        );
    }
}

#[test]
fn the_script_passes_bash_n_and_shellcheck() {
    let trees = Trees::new();
    for (label, root) in trees.nodes() {
        let script = root.join(format!("root{}", firstboot::SCRIPT_PATH));
        let s = script.to_str().expect("utf-8");
        let o = run("bash", &["-n", s]);
        assert!(
            o.status.success() && o.stderr.is_empty(),
            "{label}: {}",
            text(&o)
        );
        let o = run("shellcheck", &["--shell=bash", "--severity=style", s]);
        assert!(o.status.success(), "{label}: {}", text(&o));
    }
}

/// A seed file of a rendered tree: on the boot FAT, or in the root file
/// system's NoCloud seed directory (a vm node's cloud image).
fn seed(root: &Path, name: &str) -> PathBuf {
    let boot = root.join("boot").join(name);
    if boot.exists() {
        boot
    } else {
        root.join("root/var/lib/cloud/seed/nocloud").join(name)
    }
}

/// PyYAML's view of a YAML file, as JSON.
fn pyyaml(path: &Path) -> serde_json::Value {
    let code = "import json,sys,yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1], encoding='utf-8'))))";
    let o = run(
        "/usr/bin/python3",
        &["-c", code, path.to_str().expect("utf-8")],
    );
    assert!(o.status.success(), "{}: {}", path.display(), text(&o));
    serde_json::from_slice(&o.stdout).expect("python printed JSON")
}

#[test]
fn pyyaml_reads_back_exactly_the_intended_values() {
    let trees = Trees::new();
    let mut checked = 0;
    for (profile, r) in &trees.rendered {
        for node in &r.cluster.nodes {
            let root = trees
                .dir
                .path()
                .join(Trees::key(profile, node.hostname.as_str()));
            let quirks = Quirks::new(node.image.os, &node.board);
            let net = serde_json::to_value(netplan::document(node, &quirks)).expect("json");
            if quirks.uses_cloud_init() {
                let ud =
                    serde_json::to_value(user_data(node, &r.state, &quirks).expect("user-data"))
                        .expect("json");
                assert_eq!(pyyaml(&seed(&root, "user-data")), ud, "{}", node.hostname);
                assert_eq!(
                    pyyaml(&seed(&root, "network-config")),
                    net,
                    "{}",
                    node.hostname
                );
                let meta = pyyaml(&seed(&root, "meta-data"));
                assert_eq!(
                    meta["local-hostname"],
                    serde_json::json!(node.hostname.as_str())
                );
                assert!(
                    meta["instance-id"]
                        .as_str()
                        .is_some_and(|s| s.starts_with("homelab-")),
                    "{meta}"
                );
                checked += 3;
            } else {
                assert_eq!(
                    pyyaml(&root.join("root/etc/netplan/30-homelab.yaml")),
                    net,
                    "{}",
                    node.hostname
                );
                checked += 1;
            }
            if let Some(mc) = &r.cluster.microcloud {
                let expected = serde_json::to_value(
                    microcloud::preseed(&r.cluster, mc, &r.state).expect("preseed"),
                )
                .expect("json");
                assert_eq!(
                    pyyaml(&root.join("root/var/lib/homelab-image/microcloud-preseed.yaml")),
                    expected
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 15, "only {checked} YAML files checked");
}

#[test]
fn pyyaml_keeps_yaml_1_1_look_alikes_as_strings() {
    // Spot checks in the tricky profile's output, independent of our structs.
    let trees = Trees::new();
    let root = trees.dir.path().join("tricky-yes");
    let ud = pyyaml(&root.join("boot/user-data"));
    assert_eq!(ud["hostname"], "yes");
    assert_eq!(ud["packages"], serde_json::json!(["on", "no", "1e3"]));
    assert_eq!(ud["ntp"]["servers"], serde_json::json!(["1e3", "0755"]));
    assert_eq!(ud["users"][0]["gecos"], "1_000");
    assert_eq!(ud["write_files"][0]["content"], "~");
    assert_eq!(ud["write_files"][1]["permissions"], "0755");
    let net = pyyaml(&root.join("boot/network-config"));
    assert_eq!(
        net["network"]["wifis"]["wlan0"]["access-points"]["12:30"]["password"],
        "1e300000"
    );
    assert_eq!(
        net["network"]["ethernets"]["eth0"]["nameservers"]["search"],
        serde_json::json!(["yes", "no"])
    );
    let preseed = pyyaml(&root.join("root/var/lib/homelab-image/microcloud-preseed.yaml"));
    assert_eq!(preseed["session_passphrase"], "~");
    assert_eq!(preseed["initiator"], "yes");
}

#[test]
fn every_password_hash_we_produce_verifies_with_libxcrypt() {
    let trees = Trees::new();
    let mut checked = 0;
    for (_, r) in &trees.rendered {
        for node in &r.cluster.nodes {
            for user in &node.users {
                let Some(UserPassword::Plain(plain)) = &user.password else {
                    continue;
                };
                let hash = password_hash(node, user, &r.state)
                    .expect("hash")
                    .expect("some hash");
                let o = run(
                    "perl",
                    &["-e", "print crypt($ARGV[0], $ARGV[1])", plain, &hash],
                );
                assert!(o.status.success(), "{}", text(&o));
                assert_eq!(
                    String::from_utf8_lossy(&o.stdout),
                    hash,
                    "libxcrypt disagrees for {}",
                    user.name
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 2, "only {checked} hashes checked");
    for pw in ["correct horse", "ünïcödé", "x", "a:b$c\\d"] {
        let hash = homelab_image::profile::password::hash_sha512(pw, &[0x5a; 12])
            .expect("hash")
            .to_string();
        let o = run(
            "perl",
            &["-e", "print crypt($ARGV[0], $ARGV[1])", pw, &hash],
        );
        assert_eq!(String::from_utf8_lossy(&o.stdout), hash, "{pw}");
    }
}
