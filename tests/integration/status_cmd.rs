//! `status` against real OpenSSH servers. The test builds a three-node
//! profile (pi1 the MicroCloud initiator), then makes two network
//! namespaces joined by a veth pair: the "LAN" holds pi1's and pi2's
//! addresses, each served by its own `sshd` with the host key `build` made
//! for that node; pi3's address is on no machine. Each sshd runs in a
//! mount namespace of its own where tmpfs over /run and /var/lib holds
//! that node's /var/lib/homelab-image/firstboot.status (root's, 0700
//! directory, as on a node), and /etc/passwd, /etc/shadow, /etc/group and
//! /etc/sudoers are bind-mounted copies that add the profile's user
//! (passwordless sudo, as the profile says). Stand-in `cloud-init` and
//! `microcloud` scripts come first on the session's PATH (sshd_config
//! `SetEnv`), so the command status sends is the one a real node gets;
//! `sudo`, `cat`, `timeout` are the real ones. `status` runs in the other
//! namespace with the known_hosts `build` wrote. Nothing here touches the
//! host's /var/lib or /etc.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::{bin, fixture, run_ok};

fn path_with_sbin() -> String {
    format!(
        "{}:/usr/sbin:/sbin",
        std::env::var("PATH").unwrap_or_default()
    )
}

fn ip(args: &[&str]) {
    run_ok(Command::new("ip").args(args).env("PATH", path_with_sbin()));
}

/// Two namespaces and a veth pair: the LAN side holds `addresses`, the
/// client side 10.79.0.2/24. Deleted on drop.
struct Lan {
    lan: String,
    client: String,
}

impl Lan {
    /// None (the test skips, saying why) without root, `ip` or `sshd`.
    fn new(addresses: &[&str]) -> Option<Lan> {
        static N: AtomicUsize = AtomicUsize::new(0);
        if !rustix::process::geteuid().is_root() {
            eprintln!("skipping: network and mount namespaces need root");
            return None;
        }
        if !Path::new("/usr/sbin/sshd").exists() || !Path::new("/usr/bin/sudo").exists() {
            eprintln!("skipping: needs sshd and sudo (scripts/test installs them)");
            return None;
        }
        let id = format!(
            "{}{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let lan = Lan {
            lan: format!("hls{id}l"),
            client: format!("hls{id}c"),
        };
        let (lan_if, client_if) = (format!("hsl{id}"), format!("hsc{id}"));
        ip(&["netns", "add", &lan.lan]);
        ip(&["netns", "add", &lan.client]);
        ip(&[
            "link",
            "add",
            &lan_if,
            "netns",
            &lan.lan,
            "type",
            "veth",
            "peer",
            "name",
            &client_if,
            "netns",
            &lan.client,
        ]);
        for a in addresses {
            ip(&["-n", &lan.lan, "addr", "add", a, "dev", &lan_if]);
        }
        ip(&[
            "-n",
            &lan.client,
            "addr",
            "add",
            "10.79.0.2/24",
            "dev",
            &client_if,
        ]);
        for (ns, dev) in [(&lan.lan, &lan_if), (&lan.client, &client_if)] {
            ip(&["-n", ns, "link", "set", dev, "up"]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        Some(lan)
    }

    /// Our binary, run inside the client namespace.
    fn status(&self, dir: &Path, args: &[&str]) -> Output {
        let mut c = Command::new("ip");
        c.env("PATH", path_with_sbin())
            .args(["netns", "exec", &self.client])
            .arg(bin().get_program())
            .arg("--profile")
            .arg(dir.join("homelab.yaml"))
            .arg("status")
            .arg("--out")
            .arg(dir.join("out"))
            .arg("-i")
            .arg(dir.join("client_key"))
            .args(["--connect-timeout", "2"])
            .args(args)
            .env("NO_COLOR", "1")
            .env_remove("HOMELAB_PROFILE")
            .current_dir(dir);
        c.output().expect("running status in the client namespace")
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        for ns in [&self.lan, &self.client] {
            let _ = Command::new("ip")
                .args(["netns", "del", ns])
                .env("PATH", path_with_sbin())
                .status();
        }
    }
}

/// An sshd, killed on drop.
struct Sshd {
    child: Child,
    log: PathBuf,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Sshd {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// A uid no account of this machine has.
fn free_uid() -> u32 {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    let used: Vec<u32> = passwd
        .lines()
        .filter_map(|l| l.split(':').nth(2)?.parse().ok())
        .collect();
    (61000..65000)
        .find(|u| !used.contains(u))
        .expect("a free uid")
}

fn write_mode(path: &Path, text: &str, mode: u32) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// The account files the sshd's mount namespace sees: the machine's own
/// plus `alice` (uid `uid`, home in `dir`), and a sudoers giving her
/// passwordless sudo.
fn account_files(dir: &Path, uid: u32) {
    let home = dir.join("home-alice");
    std::fs::create_dir(&home).unwrap();
    rustix::fs::chown(
        &home,
        Some(rustix::fs::Uid::from_raw(uid)),
        Some(rustix::fs::Gid::from_raw(uid)),
    )
    .unwrap();
    let add = |name: &str, line: String, mode: u32| {
        let mut text = std::fs::read_to_string(Path::new("/etc").join(name)).unwrap();
        text.push_str(&line);
        write_mode(&dir.join(name), &text, mode);
    };
    add(
        "passwd",
        format!("alice:x:{uid}:{uid}:Alice:{}:/bin/bash\n", home.display()),
        0o644,
    );
    add("group", format!("alice:x:{uid}:\n"), 0o644);
    add("shadow", "alice:*:20000:0:99999:7:::\n".to_owned(), 0o640);
    write_mode(
        &dir.join("sudoers"),
        "Defaults !lecture\nroot ALL=(ALL:ALL) ALL\nalice ALL=(ALL) NOPASSWD:ALL\n",
        0o440,
    );
}

/// `node`'s sshd on `address` inside the LAN, with its build host key,
/// its status file, and stand-ins: `cloud-init status` prints and exits
/// with `cloud_init`, `microcloud cluster list` prints `members`.
fn start_sshd(
    lan: &Lan,
    dir: &Path,
    node: &str,
    address: &str,
    status_file: &str,
    cloud_init: (&str, i32),
    members: &str,
) -> Sshd {
    let nd = dir.join(format!("sshd-{node}"));
    let standin = nd.join("bin");
    std::fs::create_dir_all(&standin).unwrap();
    // The stand-ins refuse any other arguments than the ones status
    // must pass, so a changed command shows.
    write_mode(
        &standin.join("cloud-init"),
        &format!(
            "#!/bin/sh\n[ \"$*\" = status ] || {{ echo \"unexpected: cloud-init $*\"; exit 9; }}\n\
             printf '%s\\n' '{}'\nexit {}\n",
            cloud_init.0, cloud_init.1
        ),
        0o755,
    );
    write_mode(
        &standin.join("microcloud"),
        &format!(
            "#!/bin/sh\n[ \"$*\" = 'cluster list --format csv' ] || \
             {{ echo \"unexpected: microcloud $*\"; exit 9; }}\n\
             [ \"$(id -u)\" = 0 ] || {{ echo 'Error: not root'; exit 1; }}\n\
             printf '%s' '{members}'\n"
        ),
        0o755,
    );
    write_mode(&nd.join("firstboot.status"), status_file, 0o644);
    let key = dir.join(format!(".homelab-state/nodes/{node}/ssh_host_ed25519_key"));
    let config = nd.join("sshd_config");
    write_mode(
        &config,
        &format!(
            "ListenAddress {address}\nHostKey {}\nPidFile none\nUsePAM no\nStrictModes no\n\
             AuthorizedKeysFile {}\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
             AllowUsers alice\nSetEnv PATH={}:/usr/local/bin:/usr/bin:/bin\n",
            key.display(),
            dir.join("authorized_keys").display(),
            standin.display()
        ),
        0o644,
    );
    // Runs in the sshd's own mount namespace: nothing here is seen
    // outside it.
    let script = format!(
        "set -e
mount -t tmpfs -o mode=0755 tmpfs /run
mkdir -m 0755 /run/sshd
mount -t tmpfs -o mode=0755 tmpfs /var/lib
mkdir -m 0700 /var/lib/homelab-image
cp {status} /var/lib/homelab-image/firstboot.status
for f in passwd group shadow sudoers; do mount --bind {dir}/$f /etc/$f; done
exec /usr/sbin/sshd -D -e -f {config}
",
        status = nd.join("firstboot.status").display(),
        dir = dir.display(),
        config = config.display()
    );
    let log = nd.join("sshd.log");
    let child = Command::new("ip")
        .env("PATH", path_with_sbin())
        .args([
            "netns", "exec", &lan.lan, "unshare", "--mount", "sh", "-c", &script,
        ])
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(std::fs::File::create(nd.join("sshd.err")).unwrap())
        .spawn()
        .expect("starting sshd");
    let sshd = Sshd {
        child,
        log: nd.join("sshd.err"),
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while !sshd.log().contains("Server listening") {
        assert!(
            Instant::now() < deadline,
            "sshd for {node} did not start: {}",
            sshd.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    sshd
}

/// The profile: pi1 (initiator), pi2, pi3 on 10.79.0.0/24, user alice
/// with passwordless sudo and the test's key; `defaults` adds lines to
/// `defaults:`.
pub(crate) fn profile(dir: &Path, defaults: &str) {
    run_ok(
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "test@client", "-f"])
            .arg(dir.join("client_key")),
    );
    let public = std::fs::read_to_string(dir.join("client_key.pub")).unwrap();
    std::fs::write(dir.join("authorized_keys"), &public).unwrap();
    std::fs::write(
        dir.join("homelab.yaml"),
        format!(
            "defaults:
  image: {{os: ubuntu-24.04, path: {}}}
  board: rpi4
{defaults}  users:
    - name: bob
      ssh_keys: [{key}]
    - name: alice
      sudo: nopasswd
      ssh_keys: [{key}]
nodes:
  - hostname: pi1
    network: {{address: 10.79.0.11/24}}
  - hostname: pi2
    network: {{address: 10.79.0.12/24}}
  - hostname: pi3
    network: {{address: 10.79.0.13/24}}
microcloud:
  initiator: pi1
  lookup_subnet: 10.79.0.0/24
  session_passphrase: {{generate: true}}
",
            fixture("ubuntu-raspi.img").display(),
            key = public.trim()
        ),
    )
    .unwrap();
}

const PI1_STATUS: &str = "state=done\nnode=pi1\nattempt=1\nupdated=2026-11-21T10:42:07Z\n\
                          reason=first boot finished\nbootloader=2024-09-23\n";
const PI2_STATUS: &str = "state=failed\nnode=pi2\nattempt=5\nupdated=2026-11-21T11:02:00Z\n\
                          reason=snap install microceph --channel=squid/stable failed\n";
const MEMBERS: &str =
    "pi1,10.79.0.11:9443,voter,3f2a,ONLINE\npi2,10.79.0.12:9443,voter,9c1b,ONLINE\n";

/// The keys every node object has, and only them (docs/STATUS.md).
pub(crate) const KEYS: [&str; 12] = [
    "address",
    "attempt",
    "cloud_init",
    "cluster",
    "error",
    "initiator",
    "node",
    "reachable",
    "reason",
    "state",
    "updated",
    "via",
];

pub(crate) fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub(crate) fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn status_reads_a_done_and_a_failed_node_over_ssh_and_names_the_unreachable_one() {
    let Some(lan) = Lan::new(&["10.79.0.11/24", "10.79.0.12/24"]) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    // The session user must reach her home and the stand-ins.
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    // The nodes report to a status server that is not running: status
    // says so and asks them over SSH.
    profile(dir, "  status_url: http://127.0.0.1:1\n");

    // build makes the host keys and known_hosts, and says what is next;
    // -q silences that.
    let built = bin()
        .current_dir(dir)
        .args(["--profile", "homelab.yaml", "build", "--node", "pi1"])
        .output()
        .unwrap();
    assert!(built.status.success(), "{}", stderr(&built));
    let hint = stderr(&built);
    assert!(
        hint.contains("next: homelab-image flash --node pi1")
            && hint.contains("homelab-image status --watch"),
        "{hint}"
    );
    let quiet = bin()
        .current_dir(dir)
        .args(["-q", "--profile", "homelab.yaml", "build", "--node", "pi1"])
        .output()
        .unwrap();
    assert!(quiet.status.success(), "{}", stderr(&quiet));
    assert!(!stderr(&quiet).contains("next:"), "{}", stderr(&quiet));

    account_files(dir, free_uid());
    let pi1 = start_sshd(
        &lan,
        dir,
        "pi1",
        "10.79.0.11",
        PI1_STATUS,
        ("status: done", 0),
        MEMBERS,
    );
    let pi2 = start_sshd(
        &lan,
        dir,
        "pi2",
        "10.79.0.12",
        PI2_STATUS,
        ("status: error", 1),
        "",
    );

    // The table.
    let out = lan.status(dir, &[]);
    let text = stdout(&out);
    assert!(
        out.status.success(),
        "{}\n{text}\npi1 sshd: {}",
        stderr(&out),
        pi1.log()
    );
    assert!(
        stderr(&out).contains(
            "note: status server http://127.0.0.1:1 does not answer (GET \
             http://127.0.0.1:1/api/nodes: "
        ) && stderr(&out).contains("): asking over SSH"),
        "{}",
        stderr(&out)
    );
    let row = |node: &str| -> Vec<String> {
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("{node} ")))
            .unwrap_or_else(|| panic!("no row for {node}:\n{text}"));
        line.split("  ")
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(
        row("pi1"),
        [
            "pi1",
            "10.79.0.11",
            "yes",
            "done",
            "1",
            "done",
            "first boot finished"
        ],
        "{text}"
    );
    assert_eq!(
        row("pi2"),
        [
            "pi2",
            "10.79.0.12",
            "yes",
            "failed",
            "5",
            "error",
            "snap install microceph --channel=squid/stable failed"
        ],
        "{text}"
    );
    assert_eq!(
        row("pi3"),
        ["pi3", "10.79.0.13", "no", "-", "-", "-", "-"],
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("pi3: ssh: connect to host 10.79.0.13 port 22")),
        "{text}"
    );
    assert!(
        text.contains("cluster (microcloud cluster list on pi1):\n")
            && text.contains("  pi1   10.79.0.11:9443  voter  ONLINE\n")
            && text.contains("  pi2   10.79.0.12:9443  voter  ONLINE\n"),
        "{text}"
    );
    // The user logged in with the key: alice, who has passwordless sudo,
    // not bob, the first user.
    assert!(
        pi1.log().contains("Accepted publickey for alice"),
        "{}",
        pi1.log()
    );

    // --json: an array of node objects, null for what is absent.
    let out = lan.status(dir, &["--json", "--ssh"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        !stderr(&out).contains("note:"),
        "--ssh asks no server: {}",
        stderr(&out)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("status --json is JSON");
    let nodes = v.as_array().expect("an array");
    assert_eq!(nodes.len(), 3, "{v:#}");
    for n in nodes {
        let mut keys: Vec<&str> = n.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, KEYS, "{n:#}");
    }
    assert_eq!(nodes[0]["node"], "pi1");
    assert_eq!(nodes[0]["via"], "ssh");
    assert_eq!(nodes[0]["reachable"], true);
    assert_eq!(nodes[0]["state"], "done");
    assert_eq!(nodes[0]["attempt"], 1);
    assert_eq!(nodes[0]["updated"], "2026-11-21T10:42:07Z");
    assert_eq!(nodes[0]["cloud_init"], "done");
    assert_eq!(nodes[0]["initiator"], true);
    assert_eq!(nodes[0]["error"], Value::Null, "{v:#}");
    assert_eq!(
        nodes[0]["cluster"],
        serde_json::json!([
            {"name": "pi1", "address": "10.79.0.11:9443", "role": "voter", "status": "ONLINE"},
            {"name": "pi2", "address": "10.79.0.12:9443", "role": "voter", "status": "ONLINE"},
        ])
    );
    assert_eq!(nodes[1]["state"], "failed");
    assert_eq!(nodes[1]["attempt"], 5);
    assert_eq!(nodes[1]["cloud_init"], "error");
    assert_eq!(nodes[1]["initiator"], false);
    assert_eq!(nodes[1]["cluster"], Value::Null);
    assert_eq!(nodes[2]["reachable"], false);
    for key in [
        "state",
        "attempt",
        "reason",
        "updated",
        "cloud_init",
        "cluster",
    ] {
        assert_eq!(nodes[2][key], Value::Null, "pi3 {key}: {v:#}");
    }
    assert!(
        nodes[2]["error"]
            .as_str()
            .is_some_and(|e| e.contains("10.79.0.13 port 22")),
        "{v:#}"
    );

    // --watch stops at the failed node with exit 1 and its reason; on a
    // pipe the table prints once.
    let out = lan.status(dir, &["-q", "--watch", "--interval", "1"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(
        stderr(&out).trim_end(),
        "error: pi2: the first boot failed (attempt 5): snap install microceph \
         --channel=squid/stable failed"
    );
    assert_eq!(stdout(&out).matches("NODE  ADDRESS").count(), 1);
    // … and ends with 0 once every node asked is done.
    let out = lan.status(dir, &["--watch", "--node", "pi1"]);
    assert!(out.status.success(), "{}", stderr(&out));

    drop(pi2);
}

#[test]
fn status_refuses_a_node_whose_host_key_is_not_the_built_one() {
    let Some(lan) = Lan::new(&["10.79.0.11/24"]) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    profile(dir, "");
    let built = bin()
        .current_dir(dir)
        .args(["-q", "--profile", "homelab.yaml", "build", "--node", "pi1"])
        .output()
        .unwrap();
    assert!(built.status.success(), "{}", stderr(&built));
    account_files(dir, free_uid());
    // The machine at pi1's address serves pi2's host key: another machine
    // than the one built as pi1.
    let pi2_key = dir.join(".homelab-state/nodes/pi2/ssh_host_ed25519_key");
    let pi1_key = dir.join(".homelab-state/nodes/pi1/ssh_host_ed25519_key");
    std::fs::copy(&pi2_key, &pi1_key).unwrap();
    let impostor = start_sshd(
        &lan,
        dir,
        "pi1",
        "10.79.0.11",
        PI1_STATUS,
        ("status: done", 0),
        MEMBERS,
    );
    let out = lan.status(dir, &["--json", "--node", "pi1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let n = &v[0];
    assert_eq!(n["reachable"], false, "{v:#}");
    assert_eq!(n["state"], Value::Null, "{v:#}");
    assert_eq!(n["cluster"], Value::Null, "{v:#}");
    assert!(
        n["error"].as_str().is_some_and(|e| e
            .contains("the node's host key is not the one in known_hosts")
            && e.contains("strict")),
        "{v:#}"
    );
    // ssh gave up before logging in, and did not add the key anywhere.
    assert!(!impostor.log().contains("Accepted"), "{}", impostor.log());
    let known = std::fs::read_to_string(dir.join("out/known_hosts")).unwrap();
    assert_eq!(known.lines().count(), 3, "{known}");
}

#[test]
fn status_without_known_hosts_says_to_build_first() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    profile(dir, "");
    let out = bin()
        .current_dir(dir)
        .args(["--profile", "homelab.yaml", "status"])
        .output()
        .unwrap();
    crate::util::assert_fails(&out, 1, &["out/known_hosts: no such file", "`build`"]);
    let out = bin()
        .current_dir(dir)
        .args(["--profile", "homelab.yaml", "status", "--node", "pi9"])
        .output()
        .unwrap();
    crate::util::assert_fails(&out, 1, &["no node \"pi9\"", "pi1, pi2, pi3"]);
}
