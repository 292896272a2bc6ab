//! Secrets kept secret (issue 11 §5): no state directory in the repository,
//! a `.gitignore` in every state directory we create, `build` refusing a
//! state directory git tracks, `render` hiding private keys, passphrases and
//! Wi-Fi passwords unless `--show-secrets`, private modes on everything that
//! holds them, and a dry run (or a `render`) that writes nothing at all.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::profile_support::{repo, tempdir};
use crate::util::{bin, fixture, run_ok};

const WIFI_PASSWORD: &str = "wifi-pass-7Hq2";
const PASSPHRASE: &str = "mc-passphrase-Zk81";
/// A yescrypt hash: shown, it can be cracked offline.
const PASSWORD_HASH: &str =
    "$y$j9T$CtIvPx0NL1ALzHlGtupaN0$vuQeLm9qXKbJjm0nHMZ8N5PqgKrzFgl3/oY9LK0JEq8";
const ALICE_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMxSAMby/XGYsjcC5K1MDkK2b2DTWIdw+3mOB8HYPwp7 alice@laptop";

/// A two-node Ubuntu profile with a Wi-Fi password and a MicroCloud
/// passphrase, built from the raspi fixture.
fn ubuntu_profile(dir: &Path) -> PathBuf {
    let text = format!(
        "
defaults:
  image: {{os: ubuntu-24.04, path: {img}}}
  board: rpi4
  network: {{gateway: 192.168.1.1}}
  wifi:
    ssid: homelab
    password: {{value: {WIFI_PASSWORD}}}
  users:
    - name: alice
      ssh_keys: [{ALICE_KEY}]
      password_hash: {PASSWORD_HASH}
nodes:
  - hostname: pi1
    network: {{address: 192.168.1.11/24}}
  - hostname: pi2
    network: {{address: 192.168.1.12/24}}
microcloud:
  initiator: pi1
  lookup_subnet: 192.168.1.0/24
  session_passphrase: {{value: {PASSPHRASE}}}
",
        img = fixture("ubuntu-raspi.img").display()
    );
    let p = dir.join("homelab.yaml");
    std::fs::write(&p, text).expect("write profile");
    p
}

/// The same secrets on Armbian, where netplan lives in the root file system.
fn armbian_profile(dir: &Path) -> PathBuf {
    let text = format!(
        "
defaults:
  image: {{os: armbian, path: {img}}}
  board: rock-5b
  network: {{gateway: 192.168.1.1}}
  wifi:
    ssid: homelab
    password: {{value: {WIFI_PASSWORD}}}
  users:
    - name: alice
      ssh_keys: [{ALICE_KEY}]
      password_hash: {PASSWORD_HASH}
nodes:
  - hostname: rock1
    network: {{address: 192.168.1.21/24}}
microcloud:
  initiator: rock1
  lookup_subnet: 192.168.1.0/24
  session_passphrase: {{value: {PASSPHRASE}}}
",
        img = fixture("armbian-single-gpt.img").display()
    );
    let p = dir.join("homelab.yaml");
    std::fs::write(&p, text).expect("write profile");
    p
}

/// Our binary run in `cwd` with a private HOME and cache, so nothing it
/// writes can land outside the directories a test watches.
fn run_in(cwd: &Path, home: &Path, args: &[&str]) -> Output {
    bin()
        .current_dir(cwd)
        .env("HOME", home)
        .env("XDG_CACHE_HOME", home.join(".cache"))
        .args(args)
        .output()
        .expect("spawn homelab-image")
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "failed ({:?}):\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every entry under `root` with its kind, size and mode.
fn listing(root: &Path) -> BTreeMap<PathBuf, (String, u64, u32)> {
    let mut out = BTreeMap::new();
    let mut todo = vec![root.to_owned()];
    while let Some(dir) = todo.pop() {
        for e in std::fs::read_dir(&dir).expect("read_dir") {
            let path = e.expect("entry").path();
            let m = std::fs::symlink_metadata(&path).expect("lstat");
            let kind = format!("{:?}", m.file_type());
            if m.is_dir() {
                todo.push(path.clone());
            }
            out.insert(path, (kind, m.len(), m.mode()));
        }
    }
    out
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o7777
}

fn git(dir: &Path, args: &[&str]) -> Output {
    run_ok(Command::new("git").current_dir(dir).args(args))
}

#[test]
fn a_dry_run_and_render_write_nothing_at_all() {
    let dir = tempdir();
    let home = tempdir();
    for (make, node) in [
        (ubuntu_profile as fn(&Path) -> PathBuf, "pi1"),
        (armbian_profile, "rock1"),
    ] {
        make(dir.path());
        let before = (listing(dir.path()), listing(home.path()));
        let plan = ok(&run_in(
            dir.path(),
            home.path(),
            &["build", "--all", "--dry-run"],
        ));
        assert!(plan.contains(&format!("node {node}")), "{plan}");
        ok(&run_in(
            dir.path(),
            home.path(),
            &["build", "--all", "--dry-run", "--json"],
        ));
        let shown = ok(&run_in(
            dir.path(),
            home.path(),
            &["render", "--node", node],
        ));
        assert!(shown.contains("/etc/ssh/homelab/ssh_host_ed25519_key"));
        let after = (listing(dir.path()), listing(home.path()));
        assert_eq!(
            before, after,
            "a dry run or render created or changed files"
        );
        assert!(!dir.path().join(".homelab-state").exists());
        assert!(!dir.path().join("out").exists());
    }
}

#[test]
fn render_hides_host_keys_passphrases_wifi_passwords_and_password_hashes() {
    let dir = tempdir();
    let home = tempdir();
    for (make, node) in [
        (ubuntu_profile as fn(&Path) -> PathBuf, "pi1"),
        (armbian_profile, "rock1"),
    ] {
        let p = make(dir.path());
        // A kept state, so both renders show the same keys.
        crate::profile_support::prepare_state(&p);
        let hidden = ok(&run_in(
            dir.path(),
            home.path(),
            &["render", "--node", node],
        ));
        for secret in ["PRIVATE KEY", WIFI_PASSWORD, PASSPHRASE, PASSWORD_HASH] {
            assert!(
                !hidden.contains(secret),
                "{node}: {secret} shown:\n{hidden}"
            );
        }
        // The private key is hidden whole, the others where they stand.
        assert!(
            hidden.contains("<secret: ") && hidden.contains("hidden; --show-secrets to print>"),
            "{hidden}"
        );
        let key_at = hidden
            .find("==> root /etc/ssh/homelab/ssh_host_ed25519_key file 0600")
            .expect("key header");
        assert!(
            hidden[key_at..]
                .lines()
                .nth(1)
                .expect("body")
                .starts_with("<secret: ")
        );
        assert!(hidden.contains("ssid: homelab") || hidden.contains("homelab:"));
        let shown = ok(&run_in(
            dir.path(),
            home.path(),
            &["render", "--node", node, "--show-secrets"],
        ));
        for secret in [
            "BEGIN OPENSSH PRIVATE KEY",
            WIFI_PASSWORD,
            PASSPHRASE,
            PASSWORD_HASH,
        ] {
            assert!(shown.contains(secret), "{node}: {secret} not shown");
        }
        assert!(!shown.contains("<secret: "));
        // Hidden and shown differ only where secrets stand: the headers
        // (with their checksums of the real bytes) are the same.
        let headers = |t: &str| -> Vec<String> {
            t.lines()
                .filter(|l| l.starts_with("==> "))
                .map(str::to_owned)
                .collect()
        };
        assert_eq!(headers(&hidden), headers(&shown));
    }
}

#[test]
fn render_out_trees_are_private() {
    let dir = tempdir();
    let home = tempdir();
    armbian_profile(dir.path());
    let out = dir.path().join("tree");
    ok(&run_in(
        dir.path(),
        home.path(),
        &["render", "--node", "rock1", "--out", "tree"],
    ));
    assert_eq!(mode(&out), 0o700, "the tree's root");
    for secret_file in [
        "root/etc/ssh/homelab/ssh_host_ed25519_key",
        "root/var/lib/homelab-image/microcloud-preseed.yaml",
        "root/etc/netplan/30-homelab.yaml",
    ] {
        assert_eq!(mode(&out.join(secret_file)), 0o600, "{secret_file}");
    }
    // The tree holds the real bytes (it is what the image gets).
    let key = std::fs::read_to_string(out.join("root/etc/ssh/homelab/ssh_host_ed25519_key"))
        .expect("key");
    assert!(key.starts_with("-----BEGIN OPENSSH PRIVATE KEY-----"));
    let netplan =
        std::fs::read_to_string(out.join("root/etc/netplan/30-homelab.yaml")).expect("netplan");
    assert!(netplan.contains(WIFI_PASSWORD));
    // An existing empty directory given as --out is made private too.
    let existing = dir.path().join("existing");
    std::fs::create_dir(&existing).expect("mkdir");
    std::fs::set_permissions(&existing, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    ok(&run_in(
        dir.path(),
        home.path(),
        &["render", "--node", "rock1", "--out", "existing"],
    ));
    assert_eq!(mode(&existing), 0o700);
}

#[test]
fn build_outputs_and_the_state_directory_are_private() {
    let dir = tempdir();
    let home = tempdir();
    ubuntu_profile(dir.path());
    ok(&run_in(
        dir.path(),
        home.path(),
        &["build", "--sha256", "--node", "pi1", "--out", "out"],
    ));
    let out = dir.path().join("out");
    for name in ["pi1.img", "pi1.img.bmap", "pi1.img.sha256", "known_hosts"] {
        assert_eq!(mode(&out.join(name)), 0o600, "{name}");
    }
    let state = dir.path().join(".homelab-state");
    assert_eq!(mode(&state), 0o700);
    assert_eq!(
        std::fs::read_to_string(state.join(".gitignore")).expect(".gitignore"),
        "# Secrets (SSH host keys, salts, passphrases): never commit them.\n*\n"
    );
    assert_eq!(mode(&state.join("nodes/pi1/ssh_host_ed25519_key")), 0o600);
}

#[test]
fn init_keeps_its_state_directory_out_of_git() {
    let dir = tempdir();
    let home = tempdir();
    git(dir.path(), &["init", "-q"]);
    ok(&run_in(dir.path(), home.path(), &["init"]));
    assert!(
        dir.path()
            .join(".homelab-state/microcloud-passphrase")
            .exists()
    );
    git(dir.path(), &["add", "-A"]);
    let tracked = String::from_utf8(git(dir.path(), &["ls-files"]).stdout).expect("utf-8");
    assert_eq!(tracked, "homelab.yaml\n", "only the profile is tracked");
}

#[test]
fn build_refuses_a_state_directory_that_git_tracks() {
    let dir = tempdir();
    let home = tempdir();
    git(dir.path(), &["init", "-q"]);
    let p = armbian_profile(dir.path());
    let key = dir
        .path()
        .join(".homelab-state/nodes/rock1/ssh_host_ed25519_key");
    std::fs::create_dir_all(key.parent().expect("parent")).expect("mkdir");
    // A key in OpenSSH format, as a leaked one would be.
    run_ok(
        Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-C", "root@rock1", "-f"])
            .arg(&key),
    );
    git(dir.path(), &["add", "-f", ".homelab-state"]);
    let before = listing(dir.path());
    for args in [
        &["build", "--all", "--dry-run"][..],
        &["build", "--all", "--out", "out"][..],
        &["check"][..],
    ] {
        let out = run_in(dir.path(), home.path(), args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        for needle in [
            "tracked by git",
            "nodes/rock1/ssh_host_ed25519_key",
            "git rm -r --cached",
            "new keys",
        ] {
            assert!(
                stderr.contains(needle),
                "{args:?}: {needle:?} not in {stderr}"
            );
        }
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    assert_eq!(before, listing(dir.path()), "a refused build wrote nothing");
    // Once untracked, the same state builds (a dry run here).
    git(
        dir.path(),
        &["rm", "-q", "-r", "--cached", ".homelab-state"],
    );
    ok(&run_in(
        dir.path(),
        home.path(),
        &["build", "--all", "--dry-run"],
    ));
    // Without git on PATH the check is skipped silently.
    git(dir.path(), &["add", "-f", ".homelab-state"]);
    let no_git = tempdir();
    let out = bin()
        .current_dir(dir.path())
        .env("HOME", home.path())
        .env("PATH", no_git.path())
        .arg("--profile")
        .arg(&p)
        .args(["build", "--all", "--dry-run"])
        .output()
        .expect("spawn");
    ok(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("git"), "{stderr}");
}

#[test]
fn the_repository_tracks_no_state_directory() {
    let root = repo();
    let gitignore = std::fs::read_to_string(root.join(".gitignore")).expect(".gitignore");
    assert!(
        gitignore.lines().any(|l| l.trim() == ".homelab-state/"),
        "{gitignore}"
    );
    let in_git = Command::new("git")
        .current_dir(&root)
        .args(["rev-parse", "--is-inside-work-tree"])
        .output()
        .is_ok_and(|o| o.status.success());
    if in_git {
        let tracked = String::from_utf8(git(&root, &["ls-files"]).stdout).expect("utf-8");
        let leaked: Vec<&str> = tracked
            .lines()
            .filter(|l| l.contains(".homelab-state"))
            .collect();
        assert!(
            leaked.is_empty(),
            "state files in the repository: {leaked:?}"
        );
        git(
            &root,
            &[
                "check-ignore",
                "-q",
                "profiles/.homelab-state/nodes/x/ssh_host_ed25519_key",
            ],
        );
    }
}
